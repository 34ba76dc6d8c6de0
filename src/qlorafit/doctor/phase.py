"""Which phase an out-of-memory happened in, from evidence only.

Evidence, strongest first:
  1. traceback frames, in any of the forms people paste: plain ('File "x.py", line 3, in f'), IPython/Colab
     ('x.py in f(a)', 'File ~/x.py:12, in f(a)'), rich/loguru boxes ('│ /x.py:352 in f │'), rank prefixes;
  2. log markers: the last progress bar or banner before the error (a training bar gives the step, a 'Map' or
     'Running tokenizer' bar is tokenization, 'Loading checkpoint shards' is the load);
  3. the user's own words, only in a sentence that also says it ran out of memory.
No evidence -> phase None ('phase unknown'). A training frame without a step number is 'training', never guessed to
be the first step; a bare forward frame is no evidence of anything (every phase runs forward).

Phases: load, tokenization, training (step unknown), first_step, later_step, eval, generation, save, merge.
"""

import re
from dataclasses import dataclass

from qlorafit.doctor.shortage import MEMORY_TALK, shortage

DELTA_APPLIED = r"\bapply_delta\b|\bappl(?:y|ies|ying|ied) (?:the |a |its )?(?:weight |model )?(?:delta|diff)s?\b"
"""A published weight delta added to the base weights (FastChat's `apply_delta`, 'applying the delta'): a merge of two
whole checkpoints."""

# Leaf function names per phase. Order matters only for names in two lists (none today).
_FRAMES = {
    "merge": r"merge_and_unload|merge_adapter|_unload_and_optionally_merge|save_pretrained_merged|unsloth_save_model|"
             r"push_to_hub_merged|push_to_hub_gguf|save_pretrained_gguf|_merge_lora|merge_lora\w*|export_model|"
             r"merge_weights|merge_script|"
             # transformers' PreTrainedModel.dequantize: the whole 16-bit model rebuilt from the 4-bit one, as a merge
             # does (not bitsandbytes' per-layer dequantize_4bit of every 4-bit forward)
             r"dequantize",
    "save": r"save_pretrained|save_model|_save_checkpoint|_save|save_state|save_file|save_checkpoint|"
            r"_save_optimizer_and_scheduler|consolidated_state_dict",
    "eval": r"evaluate|evaluation_loop|prediction_loop|prediction_step|_evaluate|eval_step|validation_step|"
            r"nested_concat|torch_pad_and_concatenate|_pad_and_concatenate|compute_metrics|gather_for_metrics|"
            r"_nested_gather|"
            # TRL's reference pass before training (precompute_ref_log_probs): a no-grad pass over the whole dataset
            # at precompute_ref_batch_size, an evaluation's forward in all but name
            r"_precompute_ref_logps|_precompute_ref_log_probs|compute_ref_log_probs|compute_ref_logps",
    "generation": r"generate|_sample|greedy_search|beam_search|_beam_search|sample|unwrap_model_for_generation|"
                  r"_generate_and_score_completions|_generate\w*|generate_completions",
    "tokenization": r"map|_map_single|iflatmap_unordered|tokenize\w*|_tokenize\w*|_prepare_dataset|"
                    r"standardize_data_formats|apply_chat_template",
    "load": r"from_pretrained|_load_pretrained_model|load_state_dict|load_checkpoint_and_dispatch|dispatch_model|"
            r"_load_state_dict_into_meta_model|create_quantized_param|load_checkpoint_in_model|load_model|"
            r"set_module_quantized_tensor_to_device|prepare_model_for_kbit_training|_load_optimizer_and_scheduler|"
            r"_load_from_checkpoint|_load_rng_state|"
            # a repository's own loader moving the weights to the card: 'in load', Module.cuda / Module._apply
            r"load|cuda|_apply|"
            # set-up before the first step: accelerate's prepare_model wraps the model (DDP, FSDP) on its GPU
            r"_prepare_for_training|prepare_model",
    "training": r"training_step|_inner_training_loop|_fast_inner_training_loop|compute_loss|backward|run_backward|"
                r"_engine_run_backward|optimizer_step|train_step|train|train_epoch|fit|_init_group",
}
CHAT_HISTORY = (r"(?:每次|每轮|多轮|连续)对话|对话(?:轮数|历史)|历史(?:对话|记录)|(?:each|every|per) (?:chat |conversation |"
                r"dialog(?:ue)? )?turn\b|(?:chat|conversation|dialog(?:ue)?) history\b|"
                # the text generated from grows as it goes: 'after my story gets longer I get this error'
                r"\b(?:story|conversation|chat|dialog(?:ue)?|history) (?:gets|got|grows|grew|becomes|became) "
                r"(?:longer|too long)\b|"
                # the memory grows as the chat goes on: '问答过程中显存累积增长', '单次对话不终止显存不断增加', 'memory grows
                # with every question'
                r"(?:对话|问答|聊天)[^。\n]{0,16}?(?:显存|内存)[^。\n]{0,6}?(?:增加|增长|上涨|上升|累积)|"
                r"\bmemory (?:usage )?(?:grows|increases|keeps (?:growing|increasing)|goes up) (?:with|after) "
                r"(?:each|every) "
                r"(?:question|turn|message|reply|answer|round)\b")
"""A chat whose history grows turn by turn: each reply is generated from every turn before it (a generation word here,
and generation_batch's reason to trim the history)."""
_FRAME_RE = {ph: re.compile(rf"(?:{pat})") for ph, pat in _FRAMES.items()}
OPTIMIZER_STATE_CREATED = re.compile(r"torch[/\\]optim[/\\]\w+\.py\"?,? line \d+,? in _init_group\b|"
                                     r"bitsandbytes[/\\]optim[/\\]\w+\.py\"?,? line \d+,? in init_state\b")
"""torch.optim creating a parameter's state (Adam's exp_avg and exp_avg_sq) in _init_group: it does so only while the
state is empty, at the optimizer's first step."""
MODEL_RAN = re.compile(r"(?:modeling_\w+|peft[/\\]tuners[/\\][\w/\\]+)\.py\"?,? line \d+,? in forward\b")
"""A model's own forward among the traceback's frames (transformers' modeling_*.py, a PEFT layer): the model was
loaded and ran, so a loading bar printed before it is not where the failure was."""

_FRAME_LINES = (
    re.compile(r"File \"[^\"]*\", line \d+, in ([\w<>.]+)"),  # plain, loguru, [rankN]: prefixes
    re.compile(r"File [^\n\"]*?\.py:\d+,? in ([\w.]+)"),  # IPython 8 / Colab: File ~/x.py:12, in f(a)
    re.compile(r"\.py in ([\w.]+)\("),  # older IPython: /x.py in f(a)
    re.compile(r"\.py:\d+ in ([\w.<>]+)"),  # rich boxes: │ /x.py:352 in merge_and_unload │
)


_MERGE_SCRIPT = re.compile(r"File \"(?:[^\"]*[/\\])?merge\w*\.py\", line \d+, in <module>")
"""The top frame of a script the user named for the merge ('merge_lora.py', 'merge_peft_adapter.py'): every line of it,
its loads included, serves the merge."""


def frame_names(text: str) -> list[str]:
    """Function names of the traceback frames, outermost first, whatever the traceback's form (a merge script's top
    frame is named 'merge_script')."""
    hits = []
    for rx in _FRAME_LINES:
        hits += [(m.start(), m.group(1)) for m in rx.finditer(text)]
    merge = {m.start() for m in _MERGE_SCRIPT.finditer(text)}
    return ["merge_script" if at in merge else n for at, n in sorted(hits)]


def phase_from_frames(names: list[str]) -> tuple[str | None, str]:
    """The phase the frames prove, and the frame that proves it. Innermost evidence wins, except that a merge, a
    generation or a tokenization pass wraps the saves, forwards and loads it calls."""
    last: dict[str, int] = {}
    for i, n in enumerate(names):
        leaf = n.rsplit(".", 1)[-1]
        for ph, rx in _FRAME_RE.items():
            if rx.fullmatch(leaf):
                last[ph] = i
    for ph in ("merge", "generation", "tokenization"):
        if ph in last:
            return ph, names[last[ph]]
    outcome = [ph for ph in ("save", "eval") if ph in last]
    if outcome:
        ph = max(outcome, key=lambda p: last[p])
        return ph, names[last[ph]]
    for ph in ("load", "training"):
        if ph in last:
            return ph, names[last[ph]]
    # nothing but a constructor ('WhisperModel.__init__', 'in init' where a frozen executable drops the underscores):
    # building a model object places its weights, the load. Only where no other phase's frame is there
    built = [n for n in names if n.rsplit(".", 1)[-1] in ("__init__", "init")]
    if built:
        return "load", built[-1]
    return None, ""


# --- log markers: progress bars and banners, the last one before the error is where it was ----------------------

# A tqdm bar: 'Map:  45%|████▌     | 450/1000 [00:01<00:02, 300.0 examples/s]'. Found from its anchor, the
# percentage and the opening bar ('45%|'), and read forwards from there; every repetition is bounded, so the scan is
# linear in the log's length (a 5 MB log of carriage-return progress lines, or a long run of spaces, stays fast).
_BAR_ANCHOR = re.compile(r"(?P<pct>\d{1,3})%\s{0,8}\|")
_BAR_REST = re.compile(r"[^|\n]{0,400}\|\s{0,8}(?P<n>\d{1,12})/(?P<total>\d{1,12})"
                       r"(?:\s{0,8}\[(?P<elapsed>\d{1,6}(?::\d{1,6}){1,2})?)?")
_BAR_DESC_CHARS = 60
"""How far back from its percentage a bar's description is read (to the line start, a carriage return or a '|')."""
_NOTEBOOK_BAR = re.compile(r"\[\s{0,8}(?P<n>\d{1,12})/(?P<total>\d{1,12})\s{1,8}"
                           r"(?P<elapsed>\d{1,6}(?::\d{1,6}){1,2})\s{0,8}<")
_BAR_KIND = (  # a bar's description -> the phase it is a bar of (no description or Train/Epoch/Steps: training)
    (r"loading checkpoint shards|loading|downloading|fetching", "load"),
    (r"\bmap\b|tokeniz|filter|generating \w+ split|convert|preprocess|packing|running tokenizer", "tokenization"),
    (r"evaluat|predict|validat", "eval"),
    # an inference pass over its inputs: 'Recognizing Text: 379/3400', 'Detecting bboxes', 'Transcribing', 'Embedding'
    (r"recogni[sz]|detecting|transcrib|embedding|encoding|generating(?! \w+ split)|translating|inferenc", "generation"),
    (r"sav|merg|unsloth", "save"),
)
_MARKERS = (
    # (and an evaluation framework's own report of the failure: MTEB's 'Error while evaluating MSMARCO: CUDA out of
    # memory', printed after the encoding bars it ran the model with)
    (r"\*{3,} Running Evaluation|Running Evaluation|\*{3,} Running Prediction|"
     r"(?:Error|Exception|[Ff]ailed|failure) (?:while|when) evaluating\b", "eval"),
    (r"Merging 4bit and LoRA|Merging LoRA|merge_and_unload|save_pretrained_merged|export_model\.py|"
     r"merged_16bit|push_to_hub_gguf|save_pretrained_gguf", "merge"),
    # FSDP gathering the full state dict to save it (its post-state-dict hook warns per tensor it cannot clone)
    (r"Saving model checkpoint to|Saving model\b|Unsloth: Saving|Failed to clone\(\) tensor with name|"
     r"_full_post_state_dict_hook|FullStateDictConfig", "save"),
    (r"Running tokenizer on dataset|during map operation|Map \(num_proc", "tokenization"),
    (r"\*{3,} Running training|Running training|==\(\(====\)\)==  Unsloth", "training"),
    # a server whose model shards or engine could not start failed while loading the weights (text-generation-
    # inference's launcher, an inference engine's start)
    (r"\b[Ss]hard \d+ failed to start|ShardCannotStart|[Ee]ngine (?:core )?initiali[sz]ation failed|"
     r"[Ee]ngine failed to start", "load"),
)


@dataclass
class Bar:
    pos: int
    phase: str
    n: int
    total: int
    elapsed_s: int | None


def _hms(t: str | None) -> int | None:
    if not t:
        return None
    secs = 0
    for p in t.split(":"):
        secs = secs * 60 + int(p)
    return secs


def _bar_desc_start(text: str, anchor: int, floor: int) -> int:
    """Where a bar's description starts: back from its percentage over blanks (line breaks included, so a bar alone
    on its line is described by the line before it, as tqdm prints 'Saving...' and then the bar), then up to
    _BAR_DESC_CHARS characters, never past a line break, a carriage return, a '|' or the end of the previous bar."""
    window = text[max(floor, anchor - 4 * _BAR_DESC_CHARS):anchor]
    i = anchor - (len(window) - len(window.rstrip()))
    lo = max(floor, i - _BAR_DESC_CHARS)
    cut = max(text.rfind("\n", lo, i), text.rfind("\r", lo, i), text.rfind("|", lo, i))
    return cut + 1 if cut >= 0 else lo


def progress_bars(text: str) -> list[Bar]:
    bars = []
    end = 0  # where the previous bar ended: bars do not overlap
    for a in _BAR_ANCHOR.finditer(text):
        if a.start() < end:
            continue
        m = _BAR_REST.match(text, a.end())
        if not m:
            continue
        start = _bar_desc_start(text, a.start(), end)
        desc = text[start:a.start()].strip().lower()
        phase = next((ph for pat, ph in _BAR_KIND if re.search(pat, desc)), "training")
        bars.append(Bar(start, phase, int(m.group("n")), int(m.group("total")), _hms(m.group("elapsed"))))
        end = m.end()
    for m in _NOTEBOOK_BAR.finditer(text):  # the Trainer's notebook bar: [ 501/1500 06:35 < 13:11, 1.26 it/s, Epoch 1/3]
        bars.append(Bar(m.start(), "training", int(m.group("n")), int(m.group("total")), _hms(m.group("elapsed"))))
    return sorted(bars, key=lambda b: b.pos)


def last_marker(text: str) -> tuple[str | None, str, int]:
    """The phase of the last marker (bar or banner) in the text, its description and its position."""
    best = (None, "", -1)
    for pat, ph in _MARKERS:
        for m in re.finditer(pat, text):
            if m.start() > best[2] and not _done_before_the_failure(text, m):  # 'export_model.py 合并后sft报OOM'
                best = (ph, f"log line '{m.group(0)}'", m.start())
    bars = progress_bars(text)
    # a load or map bar that reached its end, in a later update too ('395/399' then '399/399'): every update of it
    ended = {(b.phase, b.total, i) for i, b in enumerate(bars) if b.total and b.n >= b.total}
    for i, b in enumerate(bars):
        done = b.phase in ("load", "tokenization") and any(
            (ph, t) == (b.phase, b.total) and j >= i for ph, t, j in ended)
        if b.pos > best[2] and not done:  # a finished load or map bar says nothing about what failed after it
            best = (b.phase, f"progress bar {b.n}/{b.total}", b.pos)
    return best


# --- the user's words ----------------------------------------------------------------------------------------------

WONT_LOAD = (r"加载不了|无法加载|加载失败|won'?t load\b|will not load\b|(?:does|did|do) ?n[o']t load\b|"
             r"can(?:not|'t) (?:be )?load(?:ed)?\b|(?:will|would) load\b[^\n]{0,80}?\bbut\b[^\n]{0,60}?\b(?:will|would|does|did) ?n[o']t\b")
"""The report says the model does not load ('34B加载不了', "the 34b will not load", 'the 7b will load in the demo, but the 34b
will not'): a failure at the load, told in words."""
GATHERED_STATE = (r"\b(?:get|gets|getting|got|gather\w*|collect\w*|consolidat\w*)\s(?:the\s)?(?:full\s|whole\s|entire\s|"
                  r"complete\s)?(?:model'?s?\s)?state[_ ]dicts?\b")
"""The model's state dict taken whole to save it ('when model get state dict', 'gathering the full state dict for
405b'): every weight (under FSDP, every shard) brought to one place before the write."""
_OOM_WORDS = re.compile(r"(?<![A-Za-z])OOM(?:ed|s|ing)?(?![A-Za-z])|out[- ]?of[- ]?memory|out of (?:gpu |cuda )?memory|"
                        r"ran out of|crash|killed|die[sd]\b|爆显存|显存\S{0,2}(?:溢出|不足|不够|超|爆)|超出?显存|爆炸|溢出|报错|内存不足|"
                        # the model does not fit one card (parse._GPU_WORDS): '无法在单卡上推理', 'cannot run on one GPU'
                        r"无法在单张?卡|单(?:张|块)?卡(?:无法|放不下|装不下|跑不了|跑不动)|(?:does ?n[o']t|won'?t|cannot|can'?t|unable to) "
                        r"(?:fit|run|load)\b[^.\n]{0,40}\b(?:on|in|into) (?:a single|one|a|single|my|our|the|this) |memory (?:usage|consumption)|"
                        r"allocate|fill(?:s|ed)? up|memory leak|泄漏|泄露|内存\S{0,2}(?:占满|满了|爆|不够)|被(?:系统)?(?:杀|kill)|all (?:of )?(?:the |my |our )?(?:available )?(?:system |host )?RAM\b|"
                        r"exceeds? (?:the )?(?:gpu |cuda )?memory|" + WONT_LOAD, re.I)
_PROSE = (  # (phase, words): checked in this order inside one sentence that also says it ran out of memory
    # (an export that quantizes, 'swift export ... awq量化', is a calibration, not a merge)
    # (not a shell's 'export CUDA_VISIBLE_DEVICES=7': a variable, not a model; a checkpoint consolidated is merged)
    ("merge", r"merg\w*|export\w*(?![^.\n。]{0,40}(?:awq|gptq|量化|quantiz))(?!\s(?:the\s)?[A-Z][A-Z0-9_]{2,}\b)|"
              r"consolidat\w*|合并|导出|" + DELTA_APPLIED),
    # saving a checkpoint, not 'save (the) memory': a verb whose object is memory is the user's wish, not a phase
    # (not spaCy's 'Aborting and saving the final best model. Encountered exception': its reaction to the failure)
    ("save", r"(?<!Aborting and )\bsav(?:e|es|ing)\b(?!\s(?:\w+\s)?(?:gpu\s|cuda\s)?(?:memory|vram|ram|space)\b)|"
             r"\bsave_(?:model|pretrained|checkpoint|state)\b|保存|"
             # the state dict taken to be written: 'when model get state dict, gpu is OOM', 'gathering the full state
             # dict' (not a state dict loaded: that is the resume)
             + GATHERED_STATE),
    # 'generation', 'generating', 'generate()', not 'the processor generates N tokens' (that is the data, not the phase)
    # 'predictions' and Trainer's .predict() are the evaluation loop's outputs, not generated text
    ("generation", r"generat(?:ion|ing)\b|\bgenerate\(|\.generate\b|inference|(?<!\.)predict(?!ions\b)\w*|rollout|"
                   # generating or sampling many outputs: 'generate 100 sequences', 'sample a number of completions'
                   r"\b(?:generate|sample)s?\s(?:~?\d+|a (?:number|batch|lot|bunch) of|many|multiple|several|lots of|more)"
                   r"\s(?:\w+\s)?(?:sequences|samples|texts|outputs|completions|responses|answers|sentences|images)\b|"
                   r"num[_-]return[_-]sequences|"
                   # a beam search is decoding, whatever calls it ('CUDA OOM for beam search in perturbation')
                   r"\bbeam[ _-]?(?:search|size|width)\b|\bnum[_-]beams\b|"
                   # the generation's own length or settings named in the failing sentence: 'increasing max_new_tokens
                   # in gen_kwargs to 512 got OOM'
                   r"\bmax[_-]new[_-]tokens\b|\bgen(?:eration)?[_-]kwargs\b|"
                   # a generation or translation script named: 'Generate.py is consuming too much memory'
                   r"\b(?:generate|translate|inference|infer)\.py\b|\btranslating\b|"
                   # a chat model's own chat() generates the reply: 'model.chat(', 'when I call the chat method'
                   r"\.chat\(|\bchat (?:method|function|api|interface)s?\b|\bcall(?:s|ed|ing)? (?:the )?chat\b|"
                   r"推理|预测|"
                   # a chat whose history grows each turn: every reply is generated from a longer prompt
                   + CHAT_HISTORY),
    # not torch's mode switch: 'from_pretrained(...).eval()' puts a model in inference mode, it is no evaluation
    ("eval", r"(?<![A-Za-z])eval(?!\(\))\w*|validat\w+\b(?! [Ee]rror)|compute[_-]metrics|preprocess_logits_for_metrics|predictions\b|\.predict\(|"
             r"评估|评测|验证|"
             # evaluation harnesses: running one is an evaluation, whatever its model is
             r"\blm[_-]eval\b|lm-evaluation-harness|\bopencompass\b|\bevalscope\b"),
    ("tokenization", r"tokeniz\w*|\.map\(|dataset map|(?:数据)?预处理|数据处理|分词"),
    ("load", r"load(?:ing|s)? (?:the |a |my )?(?:full |whole |entire |complete |original )?(?:model|checkpoint|weights)|"
             r"load(?:ing|s)? (?:[\w.-]+ ){1,3}\d+(?:\.\d+)?[bB]\b|load(?:ing|s)? (?:a |my )?[\w.-]*\d(?:\.\d+)?[bB]\b|"
             # (not the data: 'When loading inseq with a larger dataset' is a run over more inputs)
             r"(?:at|on|during|while|when) load(?:ing)?\b(?!(?: [\w.-]+){0,3} (?:with |on |for )?(?:a |the |my )?(?:larger |"
             r"large |big |bigger |whole |full |entire )?(?:datasets?|data\b|corpus|samples))|"
             r"from_pretrained|moving the model|when (?:i |we )?load\b|加载模型|"
             # 'running out of memory trying to load the LLMs'; Korean 'loading the base model' (베이스 모델을 로딩하는)
             r"(?:trying|tried|try|attempting|attempted) to load\b|load(?:ing|s)? (?:the |a |my )?(?:llms?|models)\b|"
             r"로딩|로드(?:하|할|한|중)|불러오|"
             # quantizing while loading (mistral.rs' in-situ quantization, --isq): the load holds the full weights
             r"in[- ]?situ quantiz\w*|\bISQ\b|"
             # the program's start-up is its load: '启动的时候报错显存不足', 'OOM at startup'
             r"启动(?:的)?时(?:候)?|(?:at|on|during) start-?up\b|" + WONT_LOAD),
)
_LATER = re.compile(r"(?:at|after|on|until|till|around|near|by|reach\w*) (?:training |optimizer |global )?(?:step|iteration|"
                    r"iter) ?~?\d+|\bstep ~?\d+ ?(?:of|/) ?\d+|\d+ ?/ ?\d+ (?:steps|iterations)|after (?:a few|some|several|~?\d+\+?) "
                    r"(?:steps|iterations|batches|epochs|samples)|at some batch|over \d+ epochs|for a while|"
                    r"(?:for|after) some time|training (?:for )?(?:a while|some steps)|after (?:tens of|many) steps|"
                    r"\b(?:in|during) the later (?:training|stages? of training|epochs?)\b|\blater (?:in|during) "
                    r"(?:the )?"
                    r"training\b|"
                    r"一阵子|中途|几十步|一段时间后|训练到\s*\d+\s*%|\d+\s?步|"
                    # an occasional failure: most steps ran, one batch did not
                    r"偶发|偶尔|时不时|\boccasional(?:ly)?\b|\bintermittent(?:ly)?\b|\bsporadic(?:ally)?\b|"
                    r"\bsometimes (?:it )?(?:OOMs?|runs? out|crash\w*|fails?)|(?:有时候?|偶然)(?:会)?(?:爆|OOM|溢出|报错)|"
                    # elapsed time, progress in percent, a while: the run trained before it failed
                    r"之前(?:一直|都)?正常|(?:一直|前面都)正常|(?:几|[一二两三四五六七八九十]|\d+)个?\s?epochs?\s?(?:之后|以后|后)|"
                    r"(?:runs?|ran|trains?|trained|works?|worked) (?:fine |well |normally |ok )?for (?:about |around |roughly |~)?"
                    r"~?\d+(?:\.\d+)?k? (?:steps|iterations|iters|epochs|batches)|"
                    # the failure comes after a time: 'the OOM usually comes around 400 mins', 'crashes after 90 minutes'
                    r"(?:comes?|came|happens?|happened|occurs?|occurred|appears?|fails?|failed|crash\w*|OOMs?|dies|died)"
                    r" (?:at |after )?(?:around |about |roughly |~|over )?\d+(?:\.\d+)?\s?(?:mins?|minutes|hours?|hrs?)\b|"
                    r"after (?:about |around |roughly |~|over )?\d+(?:\.\d+)?\s?(?:mins?|minutes)\b|"
                    r"after (?:a|some) while|(?:at )?(?:a )?(?:random|certain) (?:step|point|iteration)|in the middle "
                    r"of (?:the |an )?(?:training|epoch|run)|midway|halfway|part ?way through|(?:训练|跑|微调)到一半|"
                    r"(?:after|for) (?:about |around |roughly |over )?(?:a few|several|many|some|an?|"
                    r"~?\d+\+?) hours?\b|hours into|"
                    r"(?:a few|several) hundred (?:steps|iterations)|随着(?:训练|运行|迭代)(?:的进行)?[，,]?\s?[^，。,.\n]{0,8}?(?:OOM|oom|爆|溢出)|"
                    r"(?:训练|运行|跑)(?:了)?(?:一段时间|一会儿?|几个小时|很久)(?:之?后|以后)?[^，。,.\n]{0,8}?(?:OOM|oom|爆|溢出)|after \d{1,2} ?% (?:of )?(?:it|the (?:training|"
                    r"epoch|run))?|(?:跑|训练|微调|训)了?(?:几|[一二两三四五六七八九十\d]+)个?(?:小时|钟头)|"
                    # memory that keeps growing until it runs out: the steps before ran
                    r"(?:memory|vram|显存|占用)[^.\n]{0,16}(?:keeps?|kept|一直|不断|持续|无限|逐渐)\s?(?:在)?(?:往上)?"
                    r"(?:grow|increas|ris|climb|上涨|涨|增加|增长|升高)|(?:memory|vram|显存|内存|占用)\S{0,2}越来越(?:大|多|高)|"
                    # a leak is memory that grew over steps
                    r"memory leak|(?:显存|内存)泄[漏露]", re.I)
_FIRST = re.compile(r"first (?:training )?(?:step|batch|forward)|not a single step|before (?:the )?first step|"
                    # Adam allocates its two moments at the first optimizer step: an OOM there is the first step
                    r"(?:during|in|inside|at) (?:the )?(?:optimizer(?:'s)? step|step function|optimizer\.step\(\))|"
                    r"(?:at|on) step 0\b|when (?:i )?start(?:ing)? (?:the )?training|第一步|"
                    # 'The OOM was at the start of Epoch 1', 'at the beginning of training'
                    r"(?:at|on|in) the (?:very )?(?:start|beginning) of (?:the )?(?:first |1st )?(?:epoch(?:\s?[01])?(?!\s?\d)|"
                    r"training\b)", re.I)
_STEP_NUMBER = re.compile(r"(?:at|after|on|until|till|around|near|by|reach\w*) (?:training |optimizer |global )?(?:step|"
                          r"iteration|iter) ?~?(\d+)|\bstep ~?(\d+) ?(?:of|/)|(\d+) ?/ ?\d+ (?:steps|iterations)|(\d+)\s?步|"
                          r"(?:after|for) ~?(\d+)\+? (?:training )?(?:steps|iterations)", re.I)


def _sentences(text: str) -> list[str]:
    """Sentences of prose; a line wrapped mid-sentence (the next line starts in lower case) is joined back."""
    lines = [ln.replace("**", "").strip() for ln in text.splitlines()]  # markdown bold: 'call the **chat** method'
    joined: list[str] = []
    for ln in lines:
        if joined and ln and joined[-1] and (ln[0].islower() or ln[0] == "`") and not re.search(r"[.!?。:;]$", joined[-1]):
            joined[-1] += " " + ln
        else:
            joined.append(ln)
    return [s for ln in joined for s in re.split(r"(?<=[.!?。])\s+", ln) if s.strip()]


STALL = re.compile(r"\bstuck\b|\bhang(?:s|ing)?\b|\bfreez(?:es|ing)\b|\bfrozen\b|never (?:finish|end)s?|"
                   r"takes? forever|卡住|卡死|卡在", re.I)
"""A run that stalls instead of failing: no error raised, nothing ends (a host paging its RAM to disk stalls)."""
_FAILURE_WORDS = re.compile(r"\b(?:error|exception|breaks?|broke|fail(?:s|ed|ing|ure)?|crash\w*|hangs?|stops?|di(?:es|ed))\b|"
                            r"报错|崩溃|中断|" + STALL.pattern, re.I)


def phase_from_words(text: str) -> tuple[str | None, str]:
    """A phase the user names in a sentence that also says it ran out of memory; failing that, in a sentence that
    says it failed ('Evaluation loop breaks after a certain number of samples'); failing that, in one that talks
    about memory ('loading the model, the CPU memory use is 900G')."""
    sents = _sentences(text)
    done = set()  # phases the report says finished before the failure: a later mention of them is not where it failed
    for words, what in ((_OOM_WORDS, "the out-of-memory"), (_FAILURE_WORDS, "the failure"),
                        (MEMORY_TALK, "the memory it names")):
        for i, s in enumerate(sents):
            if not (words.search(s) or (words is _OOM_WORDS and shortage(s))):
                continue
            # the failing clause first: training named in it ('训练时会OOM，而且评测时...报错') is where it ran out,
            # not the phase another clause of the sentence names
            if words is _OOM_WORDS:
                clause = _clause_of(s, words)
                trained = _TRAINING_CLAUSE.search(clause)
                named_here = any(re.search(pat, clause, re.I) for _, pat in _PROSE)
                named_elsewhere = any(re.search(pat, s.replace(clause, " "), re.I) for _, pat in _PROSE)
                denied = re.search(r"(?:没有?|不会?|未|\bno|\bnot|n't|without)\s?(?:\w+\s)?(?:报|出现|发生)?\s?(?:OOM|out of memory|爆)",
                                   clause, re.I)  # '训练时候没有报OOM': training is where it did not fail
                if trained and not named_here and named_elsewhere and not denied:
                    return "training", f"the report says '{trained.group(0)}' with the out-of-memory"
            # the sentence itself first, then with the one before it ("during eval ... It OOMs"): a phase the
            # failing sentence names ('34B will not load') beats one the sentence before it names ('34B inference')
            for near in (s, " ".join(sents[max(0, i - 1):i + 1])):
                for ph, pat in _PROSE:
                    named = [m for m in re.finditer(pat, near, re.I)
                             if not _in_identifier(near, m) and not _a_setting(near, m) and not _ruled_out(near, m)]
                    done |= {ph for m in named if _done_before_the_failure(near, m)}
                    m = next((m for m in named if not _done_before_the_failure(near, m)), None)
                    if m and ph not in done:
                        return ph, f"the report says '{m.group(0)}' with {what}"
    return None, ""


def _a_setting(text: str, m: re.Match) -> bool:
    """The phase word is a schedule or size setting with its value ('eval_steps=500', 'eval_strategy: steps'): when
    a phase runs, or how big its batch is, not that it ran when memory ran out."""
    if re.match(r"tokeniz", m.group(0), re.I) and re.match(r"\s(?:in)?to\s~?\d[\d,]*\s?tokens", text[m.end():], re.I):
        return True  # 'a sentence of 2115 characters, which gets tokenized to 580 tokens': a length, not the phase
    return re.search(r"_(?:steps|strategy|delay|batch_size|on_start)$", m.group(0)) is not None and \
        re.match(r"\s*[=:]\s*[\w\"'\[{.-]", text[m.end():]) is not None


_DONE_BEFORE = re.compile(r"(?<!right )(?<!just )(?<!immediately )(?<!shortly )(?:\bafter|\bonce)\s(?:the\s)?$|"
                          # how the thing was made: 'a checkpoint saved using `accelerator.save`' is loaded now
                          r"\bsaved\s(?:using|with|by|via|through)\s\W{0,2}(?:\w+\.)*$|"
                          r"\b(?:can|could|was able to|am able to|managed to|successfully|did)\s(?:(?!not\b|never\b)\w+\s)?$|"
                          r"(?:可以|能够|成功|顺利)\s?$", re.I)
_DONE_AFTER = re.compile(r"^[^\n,.，。;；]{0,12}?(?:后|之后|以后|完成|完毕)|"
                         r"^\s(?:[\w.-]+\s){0,4}?(?:(?:works?|worked|(?:is |was |went )?fine|succeed\w*|successfully|"
                         r"(?:is |was )?ok(?:ay)?)(?![\w-])|without (?:any )?(?:problems?|issues?|errors?))|"
                         r"^[^\n,.，。;；]{0,8}?(?:成功|没问题|正常)", re.I)


def _done_before_the_failure(text: str, m: re.Match) -> bool:
    """The phase word names a step that finished before the failure: 'after merging, training OOMs', '合并lora后sft报
    OOM', 'I can load the model, but generating OOMs', 'loading the model works fine'. Not the failure's phase ('right
    after loading' is still the load's end)."""
    if _PART_OF_IT.match(text[m.end():m.end() + 40]):
        return False  # 'after generating some tokens' is in the middle of the generation, not after it
    return bool(_DONE_BEFORE.search(text[max(0, m.start() - 30):m.start()]) or _DONE_AFTER.search(text[m.end():m.end() + 40]))


_PART_OF_IT = re.compile(r"\s(?:some|a few|a couple of|several|many|a number of|~?\d+)\s(?:\w+\s)?(?:tokens|steps|"
                         r"iterations|batches|samples|words|sentences|lines|epochs)\b", re.I)
"""Progress inside the phase named ('generating some tokens', 'training 200 steps'): where the failure happened."""


_TRAINING_CLAUSE = re.compile(r"训练(?:时|的时候|中|过程中)|(?:during|while|when) training\b|in training\b", re.I)


def _clause_of(sentence: str, words: re.Pattern) -> str:
    """The comma-separated clause of the sentence that holds the failure words."""
    m = words.search(sentence)
    if m is None:
        return ""
    start = max(sentence.rfind(ch, 0, m.start()) for ch in ",，;；") + 1
    ends = [i for i in (sentence.find(ch, m.end()) for ch in ",，;；") if i >= 0]
    return sentence[start:min(ends) if ends else len(sentence)]


def _ruled_out(text: str, m: re.Match) -> bool:
    """The phase word is denied as the place of the failure: 'the OOM is not validation, not FSDP', '不是评估的时候'.
    Not a verb's negation: 'it could not load the model' failed at the load."""
    return bool(re.search(r"(?:(?:\bis|\bwas|\bare|\bwere|'s|,)\s*(?:not|never)|不是|并非)\W{0,3}$",
                          text[max(0, m.start() - 16):m.start()], re.I))


def _in_identifier(text: str, m: re.Match) -> bool:
    """The word is a piece of a longer code name, not the last part of a dotted call: 'actor_rollout_ref.rollout.
    gpu_memory_utilization' is a setting, not a rollout; 'text-generation-launcher' is a server's name;
    'AutoModelForCausalLM.from_pretrained' is still a load; '/export/home/' is a directory, not an export."""
    def code(ch: str) -> bool:
        return ch.isascii() and (ch.isalnum() or ch == "_")

    word = m.group(0)
    before = text[m.start() - 1] if m.start() > 0 else " "
    after = text[m.end():m.end() + 2] + "  "
    # a hyphen between Latin letters joins a tool's name too: 'text-generation-launcher' is a server, not a generation
    hyphen_before = m.start() > 1 and before == "-" and code(text[m.start() - 2])
    hyphen_after = after[0] == "-" and code(after[1])
    joined_before = code(word[0]) and (code(before) or hyphen_before)  # '合并lora' is CJK next to a name, not one name
    joined_after = code(word[-1]) and (code(after[0]) or (after[0] == "." and code(after[1])) or hyphen_after)
    # a directory of a path: '/export/home/envs/...' is where the files are, not an export
    directory = before == "/" and after[0] == "/"
    return joined_before or joined_after or directory


def step_from_words(text: str) -> tuple[str | None, int | None, str]:
    """first_step / later_step (with its number when said) from the user's words, or (None, None, '')."""
    for s in _sentences(text):
        m = _LATER.search(s)
        if m:
            n = _STEP_NUMBER.search(s)
            step = int(next(g for g in n.groups() if g)) if n else None
            if step in (0, 1):  # 'at step 0', 'on step 1': people count from either, and both are the first
                return "first_step", step, f"the report says '{m.group(0)}'"
            return "later_step", step, f"the report says '{m.group(0)}'"
        m = _FIRST.search(s)
        if m:
            return "first_step", 0, f"the report says '{m.group(0)}'"
    return None, None, ""
