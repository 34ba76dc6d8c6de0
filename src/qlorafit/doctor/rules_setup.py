"""Causes the setup itself proves, before any estimate: bitsandbytes refusing to load, PEFT's fp32 cast of a 16-bit
model, training in fp32, the resumed optimizer state landing on the GPU, and evaluation or generation run at a batch
the card cannot hold. Each rule says how it knows (Cause.strength)."""

import re

from qlorafit.doctor import evidence as E
from qlorafit.doctor import prose
from qlorafit.doctor.case import Case, gib
from qlorafit.doctor.cause import Action, Cause
from qlorafit.doctor.parse import DISPATCH
from qlorafit.doctor.phase import CHAT_HISTORY
from qlorafit.doctor.ruled_out import batch_helps


def bnb_cpu_dispatch(c: Case) -> Cause | None:
    """'Some modules are dispatched on the CPU or the disk': accelerate's device map did not fit the quantized model
    into the free GPU memory, so it put layers on the CPU, which bitsandbytes refuses for 4/8-bit weights."""
    if c.oom.kind != "dispatch":
        return None
    said = DISPATCH.search(c.inputs.error_text or "")
    said = said.group(0) if said else "Some modules are dispatched on the CPU or the disk"
    ev = [f"the error is bitsandbytes' refusal: '{said}' (the device map placed layers on the CPU because the GPU's "
          f"free memory could not hold the quantized model)"]
    if c.est and c.budget_bytes:
        ev.append(f"estimate: the weights as loaded take {gib(c.est.phases['load'])} of {gib(c.budget_bytes)}")
    return Cause("bnb_cpu_dispatch", "the quantized model does not fit the GPU memory that is free",
                 "accelerate's automatic device map spilled layers to the CPU; 4/8-bit layers cannot run there",
                 ev, ("quantize",),
                 [Action("use a larger GPU or a smaller model; if another process or an earlier model in the same "
                         "notebook holds the GPU, free it first (restart the kernel). device_map={'': 0} turns this "
                         "into a CUDA OOM message with numbers", "a different model or GPU", id="smaller_model"),
                  Action("keep the spilled layers in 32-bit on the CPU: BitsAndBytesConfig("
                         "llm_int8_enable_fp32_cpu_offload=True) with a custom device_map (slow; inference only)",
                         "speed: very slow", id="cpu_offload")],
                 strength="proven", phase="load")


_KBIT_CAST = re.compile(r"prepare_model_for_kbit_training")
_SIXTEEN = re.compile(r"\b16[- ]?bit\b|\bfp16\b|\bbf16\b|float16|unquantized|non-quantized|not quantized|非8bit|"
                      r"without quantization", re.I)


VOCAB_STATES_SHARE = 0.4
"""Trained embedding and head matrices whose fp32 weights, gradients and Adam state take this share of the card or
more are what filled it, whichever allocation failed last."""


def vocab_states(c: Case) -> str | None:
    """A 4-bit run whose script trains the embeddings or the LM head whole (modules_to_save) after
    prepare_model_for_kbit_training made them fp32: their weights, gradients and two Adam moments are 16 bytes per
    parameter, vocabulary x hidden apiece. The evidence line where that is VOCAB_STATES_SHARE of the card or more."""
    named = c.settings.get("trains_vocab_modules")
    script = c.inputs.script
    card = E.card_bytes(c) or c.oom.total_bytes
    if not (named and script is not None and script.first("prepare_model_for_kbit_training") and c.shape and card) \
            or E.quantized(c) is not True:
        return None
    n = len(named)
    states = 16 * c.shape.vocab_size * c.shape.hidden_size * n
    if states < VOCAB_STATES_SHARE * card:
        return None
    return (f"the script trains {', '.join(named)} whole (modules_to_save): prepare_model_for_kbit_training made them fp32, and each trained matrix "
            f"({c.shape.vocab_size:,} x {c.shape.hidden_size:,}) keeps weights, gradients and two Adam moments, 16 "
            f"bytes per parameter: {gib(states)} for {n}, on a {gib(card)} card")


def kbit_prep_fp32(c: Case) -> Cause | None:
    """prepare_model_for_kbit_training on a model that is not 4/8-bit: PEFT casts every non-quantized weight to fp32,
    so a 16-bit model doubles in size before training starts."""
    t = E.text(c)
    vocab = vocab_states(c) if c.has_oom else None
    if vocab:
        return Cause("kbit_prep_fp32", "the embeddings and LM head, cast to fp32, are trained whole",
                     "prepare_model_for_kbit_training casts what it did not quantize to fp32, and modules_to_save "
                     "trains a full copy of each: vocabulary-sized matrices with gradients and Adam state",
                     [vocab], actions=[Action("train only the adapters: drop embed_tokens/lm_head from modules_to_save "
                                              "(PEFT's trainable_token_indices trains just new tokens' rows)", "none",
                                              patch=["- modules_to_save=['embed_tokens', 'lm_head']"],
                                              id="skip_kbit_prep")], strength="script")
    called = (c.inputs.script is not None and c.inputs.script.first("prepare_model_for_kbit_training") is not None) \
        or _KBIT_CAST.search(c.inputs.error_text or "") is not None
    if not called:
        return None
    q = E.quantized(c)
    in_frames = re.search(r"in prepare_model_for_kbit_training|prepare_model_for_kbit_training\(", c.inputs.error_text or "")
    says_16 = _SIXTEEN.search(t) is not None
    # a 4/8-bit model: the cast still makes fp32 copies of what was not quantized (embeddings, LM head, norms), and
    # the traceback inside it shows that this cast is what ran out
    quant_cast = bool(in_frames) and (q is True or (q is None and not says_16))
    if q is True and not quant_cast and not (in_frames and says_16 and not re.search(r"load_in_[48]bit\s*=\s*True", t)):
        return None
    if q is None and not says_16 and not quant_cast:
        return None
    ev = ["prepare_model_for_kbit_training is called" + (" (the traceback is in it)" if in_frames else "")]
    if quant_cast:
        ev.append(("the model is 4/8-bit, but" if q else "the traceback is inside it:") + " PEFT casts every weight "
                  "that is not quantized to fp32 (all of them on a 16-bit model; on a 4-bit one the embeddings and the "
                  "LM head, each vocabulary x hidden, and the norms)")
        if c.shape is not None:
            ev.append(f"{c.shape.name}: the embedding matrix alone is "
                      f"{gib(4 * c.shape.vocab_size * c.shape.hidden_size)} in fp32 ({c.shape.vocab_size:,} x "
                      f"{c.shape.hidden_size:,})")
    else:
        ev.append("the model is not loaded in 4/8-bit" if q is False else "the report says the model is 16-bit")
    if c.shape is not None and not quant_cast:
        ev.append(f"casting {c.shape.name}'s 16-bit weights to fp32 adds about {gib(2 * c.shape.total_params())} "
                  f"(2 bytes per parameter)")
    return Cause("kbit_prep_fp32", "prepare_model_for_kbit_training casts the weights it did not quantize to fp32"
                 if quant_cast
                 else "prepare_model_for_kbit_training casts a 16-bit model to fp32",
                 "it is meant for 4/8-bit models; on a 16-bit model every weight that is not quantized becomes fp32, "
                 "twice the memory", [e for e in ev if e],
                 actions=[Action("do not call prepare_model_for_kbit_training on a 16-bit model; enable gradient "
                                 "checkpointing and model.enable_input_require_grads() yourself", "none",
                                 patch=["- model = prepare_model_for_kbit_training(model)",
                                        "+ model.gradient_checkpointing_enable(); model.enable_input_require_grads()"],
                                 id="skip_kbit_prep")],
                 strength="script" if (c.inputs.script is not None and q is False) else "proven" if in_frames
                 else "inferred", phase="load")  # the cast happens when the model is prepared, before any step


def _report_words(c: Case) -> str:
    """The report and the script, less the library code a traceback quotes (a model's norm casting to torch.float32 is
    not the user saying fp32)."""
    from qlorafit.doctor.foreign import without_library_code

    script = c.inputs.script.text if c.inputs.script is not None else ""
    return without_library_code(c.inputs.error_text or "") + ("\n" + script if script else "")


_FP32_WORDS = re.compile(r"\b32[- ]?bit (?:precision|weights|floats?)|"
                         # Lightning/Fabric's mixed precision keeps fp32 weights and autocasts ('bf16-true' does not)
                         r"(?<![\w-])(?:bf)?16-mixed\b|"
                         # the transformers example scripts' start-up log line: 'distributed training: False, 16-bits
                         # training: False'
                         r"16-bits training:\s*False|(?<![\w.])(?:float32|fp32) (?:checkpoints?|weights|"
                         r"models?|parameters)\b|\b(?:they're|they are|it's|it is|are|is) (?:stored |saved |kept )?(?:in )?"
                         r"(?:float32|fp32)\b(?! (?:logits|loss|output))|\bin fp32\b|\bin float32\b|loads? in fp32|"
                         r"full[- ]precision|torch\.float32|(?:forgot|forget|forgetting|did ?n[o']t|didn't|never) (?:to )?"
                         r"(?:set|enable|use|turn on|pass|add)\w* (?:the )?(?:--)?(?:bf16|fp16|mixed precision|torch_dtype)\b|"
                         r"\b(?:bf16|fp16)(?:=True)? (?:was |is )?not (?:set|enabled|on|used)\b|(?:without|no) (?:a |setting |any )?(?:torch_)?dtype\b|"
                         r"(?:torch_)?dtype (?:is |was )?not (?:set|given|specified)|(?:up)?cast\w*\b[^.\n]{0,40}\bto (?:fp32|float32)\b|"
                         r"\bupcast\w*|\b(?:in|with) (?:a )?(?:lower|half|reduced) precision\b[^.\n]{0,30}\b(?:works|"
                         r"worked|fits|helps|helped|solved)|"
                         # both 16-bit flags said off: 'fp16=False and bf16=False'
                         r"\b(?:fp16|bf16)\s*=\s*False\b[^.\n]{0,30}\b(?:fp16|bf16)\s*=\s*False\b|"
                         # no 16-bit said in words: '没有开fp16和bf16', 'without mixed precision'
                         r"(?:using|uses|use|trains? in|training in|runs? in|running in) (?:fp32|float32)\b|(?:fp32|float32) "
                         r"instead of|(?:没有?|未|不)(?:开|开启|启用|用|使用|设置)\s?(?:fp16|bf16|混合精度|半精度)|without (?:fp16|bf16|mixed "
                         r"precision)|(?:no|not using|disabled) mixed precision|"
                         # 16-bit unknown to the user or missing from the code: 'Dont know about fp16', 'the code there
                         # does not have fp16 support added'
                         r"\b(?:do ?n[o']t|dont|doesn'?t) know (?:about |what )?(?:fp16|bf16|mixed[- ]precision|half[- ]precision)\b|"
                         r"(?:does ?n[o']t|doesn't|do ?n[o']t|has no|have no|no|without) (?:have )?(?:any )?(?:fp16|bf16|"
                         r"half[- ]precision|mixed[- ]precision) support\b|"
                         # this model takes more than its peers of the same size: 'other 7B models run', '其他7B大模型是可以跑的'
                         r"\bother \d+(?:\.\d+)?\s?B (?:\w+ )?models? (?:can |could |do |does |will )?(?:run|work|fit|load)|"
                         r"其他\s?\d+(?:\.\d+)?\s?B\S{0,3}模型\S{0,3}(?:可以|能)(?:跑|运行|加载)", re.I)
"""The report says the weights are (or become) fp32: stated, cast ('casting model params to float32', upcast), shown
by its cure ('loading in lower precision works'), or by a model that needs more than others of its size."""


_MOVE_THEN_CAST = re.compile(r"\.(?:cuda\(\s*\d*\s*\)|to\(\s*(?:[\"']cuda(?::\d)?[\"']|device|torch\.device\([^)]*\))\s*\))\s*"
                             r"\.(?:to\(\s*(?:dtype\s*=\s*)?torch\.(?:bfloat16|float16|half)\s*\)|half\(\)|bfloat16\(\))")
"""A chain that moves the model to the GPU and only then casts it to 16-bit ('model.eval().cuda().to(torch.bfloat16)',
'.to("cuda").half()'): the weights reach the card as loaded, fp32 unless from_pretrained was given a 16-bit dtype
(transformers before 5 load float32 by default), and the cast needs room for both copies of each tensor."""


def _move_then_cast(c: Case) -> Cause | None:
    """The posted code (or the report quoting it) moves the model to the GPU before casting it to 16-bit: the weights
    arrive in fp32, twice their 16-bit size, so a model that fits in 16-bit runs out at the move."""
    script = c.inputs.script.text if c.inputs.script is not None else ""
    m = _MOVE_THEN_CAST.search(script) or _MOVE_THEN_CAST.search(c.inputs.error_text or "")
    if m is None or re.search(r"(?:torch_)?dtype\s*=\s*(?:torch\.)?(?:bfloat16|float16|half|[\"'](?:auto|bfloat16|float16)"
                              r"[\"'])", _report_words(c)):
        return None  # loaded in 16-bit already: the cast after the move copies nothing of size
    return Cause("fp32_training", "the weights reach the GPU in fp32, before the cast to 16-bit",
                 "a model loaded without a 16-bit torch_dtype is float32; moved to the GPU first, every weight takes 4 "
                 "bytes there (and the cast briefly needs both copies) before it is halved",
                 [f"the code moves the model to the GPU and then casts it: `{m.group(0)}`"],
                 actions=[Action("load the weights in 16-bit: from_pretrained(..., torch_dtype=torch.bfloat16) (or cast "
                                 "before the move: .to(torch.bfloat16).cuda())", "none",
                                 patch=["+ from_pretrained(..., torch_dtype=torch.bfloat16)"], id="bf16")],
                 strength="script", phase="load")


_CAST_TO_FP32 = re.compile(r"\b(?:model|base_model|net|policy|classifier|encoder|backbone)\w*\s*(?:=\s*\w+)?\."
                           r"(?:float\(\)|to\((?:dtype\s*=\s*)?torch\.float32\))")
"""The code casts the whole model to fp32 ('model = model.float().to(device)', 'model.to(torch.float32)'): every weight
takes 4 bytes, whatever dtype it was loaded in. (Not a tensor's .float(): the logits' upcast is fp32_logits.)"""


def _cast_to_fp32(c: Case) -> Cause | None:
    """The model cast to fp32 by the user's own code: in the traceback's failing line (proven) or the posted script."""
    in_trace = _CAST_TO_FP32.search(c.inputs.error_text or "")
    m = in_trace or _CAST_TO_FP32.search(c.inputs.script.text if c.inputs.script is not None else "")
    if m is None:
        return None
    return Cause("fp32_training", "the code casts the model to fp32",
                 "`.float()` on a model makes every weight (and so every activation and gradient) 4 bytes, twice the "
                 "16-bit size it was loaded in", [f"the {'traceback' if in_trace else 'script'} casts the model: "
                                                   f"`{m.group(0)}`"],
                 actions=[Action("keep the model in 16-bit (drop .float(); use autocast for mixed precision, and fp32 "
                                 "only for the few weights that need it, such as a classification head)", "none",
                                 patch=["- model = model.float()"], id="bf16")],
                 strength="proven" if in_trace else "script", phase="load" if in_trace else None)


FP32_LOAD_TOLERANCE = 0.03
"""How close a load's one request must be to 4 bytes per parameter of the model to be its fp32 weights."""
_WHOLE_MODEL_AT_ONCE = re.compile(r"\bin caching_allocator_warmup\b")
"""transformers' from_pretrained reserving the bytes of every weight at once, at the dtype it loads them in."""


def _fp32_load_request(c: Case) -> Cause | None:
    """A load whose one failed request is 4 bytes for every parameter of the model the settings name (28.37 GiB for
    Qwen2.5-7B's 7.6B): the weights are loaded in float32, whatever the run meant (a TRL trainer given the model by
    name, a dtype left out). Proven where the request is from_pretrained's reservation of the whole model."""
    req = c.oom.requested_bytes
    params = c.shape.total_params() if c.shape is not None else None
    if not (req and params) or c.oom.phase not in (None, "load") or abs(req - 4 * params) > FP32_LOAD_TOLERANCE * 4 * params:
        return None
    if c.full_fine_tune or E.full_tune(c):
        return None  # every weight trained: its states (ddp_replica) outweigh the load's dtype, fp32 master weights anyway
    whole = _WHOLE_MODEL_AT_ONCE.search(c.inputs.error_text or "")
    ev = [f"the failed request of {gib(req)} is 4 bytes for each of {c.shape.name}'s {params / 1e9:.2f}B parameters: "
          f"the weights are being loaded in float32" + (" (from_pretrained reserving the whole model at once)" if whole
                                                       else "")]
    if c.settings.get("trl_fp32_default"):
        ev.append("the script gives the TRL trainer the model by name with no dtype in model_init_kwargs: TRL loads it "
                  "in float32 (bf16=True only autocasts the compute)")
    return Cause("fp32_training", "the weights are loaded in float32",
                 "a checkpoint loads in float32 unless a 16-bit dtype is asked for: every weight takes 4 bytes, twice "
                 "what it needs", ev,
                 actions=[Action("load in 16-bit: from_pretrained(..., dtype=torch.bfloat16), or for a TRL trainer "
                                 "given the model by name model_init_kwargs={'dtype': torch.bfloat16}", "none",
                                 patch=["+ model_init_kwargs={'dtype': torch.bfloat16}"], id="bf16")],
                 strength="proven" if whole else "numbers", phase="load")


_CALIB_LEN = re.compile(r"\b(?:max_calib_seq_len|calib_seq_len|seqlen|max_seq_len(?:gth)?)\s*=\s*(\d{3,6})\b")
"""The calibration samples' length a quantization script sets ('max_calib_seq_len=20000')."""
CALIB_LONG_TOKENS = 4096
"""A calibration length from this many tokens up is what a quantizer's layer-by-layer forward runs out on (AutoAWQ's
default is 512, AutoGPTQ's examples 2048)."""
_WHOLE_ON_GPU = re.compile(r"\bmax_memory\s*=|device_map\s*=\s*[\"'](?:auto|cuda)[\"']|\.cuda\(\)|\.to\([\"']cuda")
"""The script places the whole model on the GPUs, where a quantizer would keep it in RAM and move one layer at a
time."""


def quantize_job(c: Case) -> Cause | None:
    """A post-training quantization (AutoAWQ, AutoGPTQ, llm-compressor) that runs out: its calibration forward at a
    long sample length, or the whole 16-bit model placed on the GPU beside the layer being quantized. Read from the
    script: the quantizer's own memory is a layer and its calibration activations."""
    if not c.has_oom or not E.quantizes(c) or E.TRAINING_WORDS.search(E.text(c).replace("batch_size", "")):
        return None
    t = E.text(c)
    long = next((m for m in _CALIB_LEN.finditer(t) if int(m.group(1)) >= CALIB_LONG_TOKENS), None)
    if long:
        return Cause("batch_or_seq", "the calibration samples are too long",
                     "the quantizer runs every calibration sample through each layer at once: activations grow with "
                     "samples x length", [f"the script sets '{long.group(0)}' for the calibration samples"],
                     ("seq",), [Action("shorten the calibration samples (512-2048 tokens) or use fewer per batch "
                                       "(n_parallel_calib_samples)", "quality: slight",
                                       patch=["+ max_calib_seq_len=2048"], id="seq")], strength="script")
    whole = _WHOLE_ON_GPU.search(t)
    if whole:
        return Cause("load_too_big", "the whole model is placed on the GPU to be quantized",
                     "a quantizer needs only the layer it works on on the GPU; the whole 16-bit model there leaves no "
                     "room for it", [f"the script places the model on the GPU ('{whole.group(0)}') for quantization"],
                     ("quantize",), [Action("load the model into CPU RAM (no max_memory / device_map) and let the "
                                            "quantizer move one layer at a time to the GPU", "speed: slower",
                                            id="low_cpu_mem")], strength="script", phase="load")
    return None


def script_holds_twice(c: Case) -> Cause | None:
    """What the user's script keeps on the GPU on top of the model, read from it: a second load of the same model (a
    pipeline given the model's id after the model was loaded), or every generation's KV cache kept across a loop."""
    if not c.has_oom or c.inputs.script is None:
        return None
    s = c.settings
    if s.get("keeps_cache"):
        return Cause("generation_batch", "every generation's KV cache is kept",
                     "a KV cache holds keys and values for every layer and token; one kept per input adds up until "
                     "the card is full", [f"the script keeps each generation's cache ({s['keeps_cache']})"],
                     ("batch",), [Action("keep only the text (out.sequences) or move the cache off the GPU; reuse "
                                         "one prompt cache copy per question and drop it after", "none", id="batch")],
                     strength="script", phase="generation")
    if s.get("loads_twice"):
        return Cause("load_too_big", "the same model is loaded twice",
                     "each load puts a full copy of the weights on the GPU", [f"the script {s['loads_twice']}"],
                     ("quantize",), [Action("load it once and pass the loaded model on (pipeline(model=model, "
                                            "tokenizer=tokenizer))", "none", id="smaller_model")],
                     strength="script", phase="load")
    return None


def fp32_training(c: Case) -> Cause | None:
    """Training in fp32: bf16/fp16 absent, False or commented out, and no 16-bit dtype for the weights; the weights,
    activations and logits all take twice the memory."""
    if not c.has_oom:
        return None
    moved = _move_then_cast(c) or _cast_to_fp32(c) or _fp32_load_request(c)
    if moved is not None:
        return moved
    words = _FP32_WORDS.search(_report_words(c))
    prec = E.precision(c)
    if prec != "fp32" and not words and c.settings.get("trl_fp32_default"):
        return _trl_fp32(c)
    if prec != "fp32" and not words:
        return _bf16_on_old_card(c)
    ev = []
    for k in ("bf16", "fp16"):
        if f"commented_{k}" in c.settings:
            ev.append(f"the script has the flag commented out: `{c.settings[f'commented_{k}']}`")
    if prec == "fp32" and not ev:
        ev.append("neither bf16 nor fp16 is set, and no 16-bit torch_dtype: the model and its activations are fp32")
    if words:
        said = words.group(0) in (c.inputs.error_text or "")  # the report's words, not the posted script's
        ev.append(f"{'the report says' if said else 'the script says'} '{words.group(0)}'")
    trains = E.TRAINING_WORDS.search(E.text(c)) or prec == "fp32"
    return Cause("fp32_training", "training runs in fp32" if trains else "the weights are loaded in fp32",
                 "without bf16/fp16 (and a 16-bit torch_dtype) every weight, activation and logit takes 4 bytes"
                 if trains else "a float32 checkpoint loads in float32 unless torch_dtype says otherwise: every weight "
                 "takes 4 bytes, twice what it needs to run",
                 ev, actions=[Action("train in 16-bit: bf16=True (fp16=True on GPUs without bf16) and "
                                     "from_pretrained(torch_dtype=torch.bfloat16)", "none on Ampere or newer",
                                     patch=["+ bf16=True  # fp16=True before Ampere",
                                            "+ from_pretrained(..., torch_dtype=torch.bfloat16)"], id="bf16")],
                 # the script's own from_pretrained asking for float32 shows it too (fp16=True then only autocasts)
                 strength="script" if prec == "fp32" or (c.inputs.script is not None and not c.settings.get(
                     "trl_fp32_default") and "32" in str(c.settings.get("torch_dtype") or "")) else "inferred")


_BF16_ASKED = re.compile(r"(?<![A-Za-z0-9])bf16(?![A-Za-z0-9])|_bf16|bf16_|bfloat16", re.I)


def _bf16_on_old_card(c: Case) -> Cause | None:
    """A training run that asks for bf16 on a card without it (V100, T4, P100: before Ampere): the bf16 config does
    not give it 16-bit training there (DeepSpeed and the Trainer refuse it or run it emulated), so it runs at fp32's
    memory unless fp16 is asked for instead."""
    t = E.text(c) + " " + E.settings_text(c)
    asked = _BF16_ASKED.search(t)
    card = prose.card_lacks_bf16(c.inputs.error_text or "")
    if not (asked and card) or not E.TRAINING_WORDS.search(t) or re.search(r"(?<![A-Za-z0-9])fp16|float16", t, re.I):
        return None
    return Cause("fp32_training", f"bf16 asked for on a {card}, which has none",
                 "cards before Ampere (V100, T4, P100) have no bf16: a bf16 configuration there does not train in 16-bit",
                 [f"the report asks for bf16 ('{asked.group(0)}') on a {card}, a card without bf16"],
                 actions=[Action("train in fp16 on this card: fp16=True (DeepSpeed: \"fp16\": {\"enabled\": \"auto\"}) "
                                 "instead of bf16; or use an Ampere or newer GPU", "numerics: fp16 loss scaling",
                                 patch=["- bf16=True", "+ fp16=True"], id="bf16")],
                 strength="inferred")


def _trl_fp32(c: Case) -> Cause:
    """A TRL trainer given the model by name, with no dtype in model_init_kwargs: TRL loads it in float32, and
    bf16=True only autocasts the compute, so the weights (and a full fine-tune's gradients) take 4 bytes each. Inferred:
    it doubles the weights, but whether they are what ran out depends on the rest."""
    return Cause("fp32_training", "TRL loads the model in fp32",
                 "a model given to a TRL trainer by name is loaded in float32 unless model_init_kwargs sets its dtype; "
                 "bf16=True autocasts the compute, but every weight still takes 4 bytes",
                 [f"the script gives {c.settings.get('model')!r} to a TRL trainer by name and no dtype in "
                  f"model_init_kwargs: TRL's default is float32"],
                 actions=[Action("load it in 16-bit: model_init_kwargs={'dtype': torch.bfloat16} in the trainer's "
                                 "config (or load the model yourself with dtype=torch.bfloat16 and pass it)",
                                 "none on Ampere or newer", patch=["+ model_init_kwargs={'dtype': torch.bfloat16}"],
                                 id="bf16")],
                 strength="inferred")


_RESUME_FRAMES = re.compile(r"_load_optimizer_and_scheduler|_load_from_checkpoint|optimizer\.load_state_dict|"
                            r"load_state_dict\(torch\.load|"
                            # any framework's own restore: a load_opt(imizer)_state frame, a torch.load of an
                            # optimizer file ('optimizers.bin', 'optimizer.pt')
                            r"\bload_optim\w*_state\w*|\bload_opt_state\w*|"
                            r"\b(?:torch|th)\.load\([^\n]{0,80}optim\w*\.(?:bin|pt|pth|ckpt)|"
                            # accelerate's restore of a whole training state (model, optimizer, scheduler, RNG)
                            r"\baccelerator\.load_state\b|\bload_accelerator_state\b")
_RESTORED_TO_GPU = re.compile(r"serialization\.py\"?,? line \d+, in (?:default_restore_location|_deserialize|_cuda_deserialize)")
"""torch.load putting each saved tensor back on the device it was saved from (no map_location): a checkpoint written
on the GPU is read straight onto it, beside the live model and optimizer."""
_CKPT_NAMED = re.compile(r"\b\w*(?:ckpt|checkpoint|optimi[sz]er|resum)\w*\b|\blast\.pt\b|\bstate_dict\b", re.I)
"""What a torch.load reads is a training checkpoint: a name saying so (ckpt_path, checkpoint, optimizer, resume)."""
_RESUME_WORDS = re.compile(r"resum\w* (?:the )?(?:training )?from (?:a |the )?checkpoint|when resuming|"
                           # the failure placed at the resume: 'a transient CUDA OOM while resuming ... checkpoints'
                           r"\b(?:while|during|upon|on) resum(?:ing|e)\b|"
                           r"(?:continu\w*|restart\w*|pick\w* up|carry\w* on) (?:the |my )?(?:training |run )?from (?:a |the |my )?"
                           r"(?:saved |last |latest |previous |earlier )?checkpoint|"
                           r"\b(?:restor|reload|load)\w* (?:the |its |saved |my )*optimi[sz]er(?:'s)? state|"
                           r"resume_from_checkpoint|init_from=resume|loading optimizer states?|from checkpoint, I run|"
                           r"断点续训|断点续练|断点训练|恢复训练|从(?:断点|checkpoint)(?:恢复|继续)|"
                           # a saved state read onto the card: 'loads custom states to GPUs', 'loads the weights in a
                           # state_dict on a GPU', 'loading the best checkpoint after training is finished'
                           r"\bload\w*\b[^.\n]{0,40}?\bstate(?:s|_dict| dicts?)?`?\s(?:on|to|onto) (?:the |a )?GPUs?\b|"
                           r"\bload\w* the best (?:model|checkpoint)\b[^.\n]{0,20}?\bafter (?:the )?training|"
                           # the best model's saved state read back at the end of a training ('OOM while loading best
                           # model state'), or the report's own cure: reading the saved state onto the CPU first
                           r"\bload\w* (?:the )?best[_ ]model[_ ]state|\bbest_model_state\b|"
                           r"\bload\w* (?:the )?(?:saved )?(?:state|state_dict|checkpoint) (?:on ?to|into|to) the CPU\b|"
                           # a whole checkpoint read onto a GPU ('rank 0 was loading the entire checkpoint to GPU
                           # memory'), or the cure said: 'fix checkpoint OOM by loading to CPU first'
                           r"\bload\w*\b[^.\n]{0,20}?\b(?:entire |whole |full )?checkpoints?\b[^.\n]{0,10}?\b(?:to|on|onto|"
                           r"into) (?:the )?GPU\b|\bcheckpoint\b[^.\n]{0,30}?\bload\w* (?:it |them )?(?:on)?to (?:the )?CPU first\b|"
                           # the saved state read onto the card, or the cure named: 'loading large checkpoints/state_dicts
                           # directly onto CUDA', 'change map_location to cpu', 'checkpoint loading cause out of memory',
                           # 'out of GPU memory issue when loading checkpoints' (not from_pretrained's checkpoint shards)
                           r"\bload\w* (?:large |saved |the |model |whole )*(?:checkpoints?|state_dicts?)(?:/state_dicts?)?"
                           r"\b[^.\n]{0,20}?\b(?:directly )?(?:to|on|onto|into) (?:the )?(?:GPU|CUDA)\b|"
                           r"\bmap_location\b[^.\n]{0,15}?\bcpu\b|\bcheckpoints? loading\b|"
                           r"\b(?:when|while) loading (?:the |model |saved )?checkpoints\b(?! shards)",
                           re.I)


ONE_GPU_LOAD = re.compile(r"(?:load\w*|allocat\w*|deserializ\w*)\b[^.\n]{0,50}?(?:multiple|several|many) times[^.\n]{0,20}?"
                           r"(?:on|to|onto) (?:the )?(?:first gpu|gpu ?0|cuda:0|rank ?0)|"
                           # 'loaded a second time in GPU 0 by process 1'
                           r"load\w*\b[^.\n]{0,20}?(?:a second time|twice|again) (?:in|on|to|onto) (?:the )?(?:first gpu|"
                           r"gpu ?0|cuda:0)|"
                           r"(?:load\w*|allocat\w*)\b[^.\n]{0,40}?(?:to|on|onto) (?:gpu )?`?rank ?0`?|"
                           r"(?:every|each) (?:rank|process)[^.\n]{0,40}(?:load\w*|deserializ\w*)[^.\n]{0,30}(?:gpu ?0|cuda:0|"
                           r"first gpu)", re.I)
"""Every process of a multi-GPU run loading a saved state onto the same GPU: torch.load puts tensors back on the
device they were saved from (cuda:0) unless map_location says otherwise, so N ranks put N copies on GPU 0."""


def resume_state(c: Case) -> Cause | None:
    """Resuming from a checkpoint: the optimizer state (and the loaded checkpoint dict) land on the GPU next to the
    live ones, so a run that trained fine from scratch no longer fits. Also every rank of a multi-GPU run loading a
    saved state onto GPU 0 (ONE_GPU_LOAD)."""
    from qlorafit.doctor.foreign import without_library_code

    t = c.inputs.error_text or ""
    frames = _RESUME_FRAMES.search(t)
    if frames is None and _CKPT_NAMED.search(t + "\n" + (c.inputs.script.text if c.inputs.script else "")):
        frames = _RESTORED_TO_GPU.search(t)
    said = without_library_code(t)  # Trainer's own code passes resume_from_checkpoint along on every run
    words = _RESUME_WORDS.search(said) or ONE_GPU_LOAD.search(said)
    if not (frames or words) or not c.has_oom:
        return None
    restored = frames is not None and _RESTORED_TO_GPU.fullmatch(frames.group(0)) is not None
    ev = [("torch.load puts each saved tensor back on the GPU it was saved from (no map_location): the checkpoint is "
           f"read onto the card beside the live model and optimizer ({frames.group(0)})") if restored else
          f"the traceback loads the checkpoint state ({frames.group(0)})" if frames else
          f"the report says '{words.group(0)}'"]
    return Cause("resume_state", "resuming puts the saved optimizer state on the GPU",
                 "the checkpoint is read onto the GPU (map_location=the device) next to the live model and optimizer, "
                 "and the loaded dict stays referenced", ev,
                 actions=[Action("load the checkpoint with map_location='cpu' and drop it after load_state_dict "
                                 "(transformers >= 4.27 loads the optimizer state on the CPU: upgrade)", "none",
                                 patch=["+ torch.load(path, map_location='cpu'); ...; del checkpoint"],
                                 id="resume_on_cpu")],
                 strength="proven" if frames else "inferred")


EVAL_BATCH_WORDS = re.compile(r"eval(?:uation)?[_ ]batch[_ ]?size|per_device_eval_batch_size|eval(?:uation)?[_ ]bs\b|eval(?:uation)? (?:\w+ )?"
                               r"(?:used|uses|defaults? to) (?:a )?batch(?: size)? (?:of )?\d+|"
                               # a benchmark's context longer than the evaluator's batch ('HellaSwag ... larger than the
                               # maximum batch size')
                               r"\b(?:hellaswag|winogrande|mmlu|arc|truthfulqa|perplexity)\b[^.\n]{0,120}?(?:larger|longer|more) "
                               r"than the (?:maximum |max )?batch(?: size)?", re.I)


_HARNESS_BATCH = re.compile(r"--batch[_-]size[= ](?:auto\b|\d+)|batch_size=auto\b", re.I)
_METRIC_WORDS = re.compile(r"compute_metrics|metric|accuracy|bleu|rouge|perplexity|\blogits\b|preds_host|nested_concat|"
                           r"predict_with_generate|eval_accumulation", re.I)


_SIMILARITY_FRAMES = re.compile(r"\bin (?:cdist|cosine_similarity|pairwise_\w+|\w*similarit\w*|\w*_distance|\w*_sim)\b|"
                                r"\btorch\.cdist\(|\bF\.cosine_similarity\(|\bsimilarity\s*=\s*\w+\(\s*\w*quer\w*", re.I)
"""The traceback fails computing a similarity or distance matrix between embeddings (torch.cdist, cosine_similarity,
a retrieval evaluator's score of queries against a chunk of documents): one block of queries x documents scored at
once, sized by the evaluation's chunk or batch, not logits gathered for metrics."""


def similarity_block(c: Case) -> str | None:
    """The frame evidence that the evaluation ran out scoring one block of embeddings against another, or None."""
    m = _SIMILARITY_FRAMES.search(c.inputs.error_text or "") if c.oom.kind == "cuda" else None
    return m.group(0) if m else None


def eval_batch_evidence(c: Case) -> list[str]:
    """Why the eval batch, not the logits, is what ran out: the settings or the report say so; [] when nothing does."""
    ev_bs = c.settings.get("per_device_eval_batch_size")
    tr_bs = c.settings.get("per_device_train_batch_size")
    out = []
    if isinstance(ev_bs, int) and isinstance(tr_bs, int) and ev_bs > tr_bs:
        out.append(f"per_device_eval_batch_size={ev_bs} is larger than the training batch {tr_bs}")
    elif ev_bs is None and isinstance(tr_bs, int) and tr_bs < 8 and c.from_user and not c.inputs.partial_settings:
        out.append(f"per_device_eval_batch_size is not set: transformers and TRL default it to 8, against a training "
                   f"batch of {tr_bs}")
    elif ev_bs is None and isinstance(tr_bs, int) and tr_bs < 8 and not _METRIC_WORDS.search(E.text(c)) \
            and not EVAL_BATCH_WORDS.search(c.inputs.error_text or ""):
        out.append(f"the settings posted give a training batch of {tr_bs} and no eval batch, and nothing posted "
                   f"computes metrics: the eval batch then defaults to 8 (transformers, TRL) and no logits are kept")
    m = EVAL_BATCH_WORDS.search(c.inputs.error_text or "")
    if m:
        out.append(f"the report says '{m.group(0)}'")
    if E.REFERENCE_PASS.search(c.inputs.error_text or ""):
        ref_bs = c.settings.get("precompute_ref_batch_size")
        out.append("the OOM is in TRL's reference pass (precompute_ref_log_probs): the reference model runs over the "
                   "whole dataset without gradients, one batch of "
                   + (f"precompute_ref_batch_size={ref_bs}" if ref_bs is not None else
                      "precompute_ref_batch_size (per_device_eval_batch_size when unset)")
                   + " sequences at a time: lower it")
    # an evaluation harness's own batch ('lm_eval ... --batch_size auto'), or a smaller batch said to work
    flat = re.sub(r"\s+", " ", c.inputs.error_text or "")
    harness = _HARNESS_BATCH.search(E.text(c))
    helps = batch_helps(flat)
    if harness and not out:
        out.append(f"the evaluation sets its own batch ('{harness.group(0)}')")
    if helps:
        out.append(f"the report says '{helps.group(0)}'")
    if not out and c.inputs.script is not None and not c.settings.get("compute_metrics") and \
            not re.search(r"compute_metrics|eval_accumulation|preds_host|nested_concat", E.text(c)):
        # the posted code evaluates without metrics that keep logits (eval_logits then says nothing): what ran out is
        # one evaluation batch, or generation inside the evaluation
        out.append("the posted code computes no metrics that keep every batch's logits: one evaluation batch (or the "
                   "generation inside it) is what ran out")
    block = similarity_block(c)
    if block and not out:
        out.append(f"the traceback fails computing a similarity matrix ('{block}'): one block of queries x documents "
                   f"scored at once, sized by the evaluation's chunk or batch")
    if eval_forward_frames(c) and not out:
        out.append("the traceback fails in the eval forward (prediction_step -> the model), not where the Trainer "
                   "gathers or concatenates logits: one eval batch's activations and logits did not fit")
    return out


_EVAL_FORWARD = re.compile(r"line \d+, in prediction_step\b")
_GATHER_FRAMES = re.compile(r"nested_concat|pad_and_concatenate|nested_numpify|_nested_gather|gather_for_metrics|"
                            r"nested_detach|in _pad_across_processes", re.I)


def gather_frames(c: Case) -> bool:
    """The error text or script shows the frames where the Trainer gathers and concatenates the eval logits it keeps
    for compute_metrics (nested_concat, torch_pad_and_concatenate, ...)."""
    return bool(_GATHER_FRAMES.search(E.text(c)))


def eval_forward_frames(c: Case) -> bool:
    """The traceback fails inside the eval step's forward (Trainer.prediction_step calling the model) and shows none of
    the gathering frames (gather_frames)."""
    return bool(_EVAL_FORWARD.search(c.inputs.error_text or "")) and not gather_frames(c)


def eval_batch(c: Case) -> Cause | None:
    """Out of memory in evaluation because the eval batch is larger than the train batch (transformers and TRL default
    per_device_eval_batch_size to 8): evaluation has no smaller micro-batch to fall back on."""
    if c.oom.phase != "eval":
        return None
    why = eval_batch_evidence(c)
    if c.settings.get("eval_keeps_graph"):
        why = [f"{c.settings['eval_keeps_graph']}: every activation of the eval forward is kept for a backward that "
               f"never comes (wrap it in torch.no_grad())"]
    if not why:
        return None
    trains = isinstance(c.settings.get("per_device_train_batch_size"), int)
    return Cause("eval_batch", "evaluation runs a larger batch than training" if trains else
                 "the evaluation's batch is too large for the card",
                 "the eval forward holds batch x length activations and logits; its batch size is separate from "
                 "training's and defaults to 8", [f"phase: evaluation ({c.oom.phase_evidence})", *why],
                 actions=[Action("set per_device_eval_batch_size to the training batch (or 1)", "speed: slower eval",
                                 patch=["+ per_device_eval_batch_size=1"], id="eval_batch"),
                          Action("preprocess_logits_for_metrics returning argmax / eval_accumulation_steps if metrics "
                                 "are computed", "none", id="eval_accumulation")],
                 strength="script" if not why[-1].startswith(("the report", "the settings posted", "the posted code",
                                                               "the evaluation sets"))
                 else "inferred")


_HISTORY = re.compile(CHAT_HISTORY + r"|\bhistory=", re.I)
"""A chat whose history grows (phase.CHAT_HISTORY), or a history passed to chat()."""


_INFERENCE_BATCH = re.compile(r"(?:embedding|embed|encod\w*|rerank\w*|transcri\w*|inference|predict\w*|prefill|"
                              r"recogni\w*|summari[sz]\w*|caption\w*|"
                              r"benchmark\w*|推理|向量化)[^.\n]{0,80}?(?:batch(?:[_ ]?size)?(?![A-Za-z0-9_-])|"
                              r"\bBS\b)|"
                              # an engine's prefill of several requests at once: 'batched prefill DRAM OOM'
                              + E.PREFILL_BATCH.pattern
                              + r"|batch[_ ]?size[^.\n]{0,60}?(?:embedding|encod\w*|rerank\w*|"
                              r"transcri\w*|inference|推理)|"
                              # the batch named before the pass: 'chunked batch encoding loops', 'batched embedding'
                              r"\bbatch(?:ed)?[_ ](?:encod\w*|embedd?\w*|inference|predict\w*|rerank\w*)", re.I)
"""A model run without training (embedding, encoding, reranking, transcribing, inference) whose batch the report names
('CUDA embedding batch size hardcoded to 256', 'Reduce GPU batch size for reranker')."""


_EMBED_SERVED = re.compile(r"\b(?:serv(?:e|es|ed|ing)|ingest\w*|index(?:es|ed|ing)?|encod(?:e|es|ed|ing))\b[^.\n]{0,40}?"
                           r"(?:embed\w*|rerank\w*|\bbge\b|\be5\b)|(?:embedding|reranker) (?:server|service|api)\b|"
                           # a sentence-transformers model loaded or run, or every text encoded at once
                           r"\bSentenceTransformer\b(?!s?Trainer)|\bencod(?:e|es|ed|ing) (?:them|it|all|every\w*|the "
                           r"(?:whole |entire )?(?:texts?|documents?|docs|corpus|sentences?|queries|passages?))\b",
                           re.I)
"""An embedding or reranker model served or run over documents ('serving NV-Embed-V2', 'an embedding server', 'Load
pretrained SentenceTransformer', 'gather all texts together and encode them'): it generates nothing, so what grows
with the load is the batch each forward takes."""


TRAINS_OR_EPOCHS = re.compile(r"\btrain|fine-?tun|微调|训练|\bepochs?\b", re.I)
"""The report trains something (an epoch is training's: 'OOM in the first epoch even at batch size 3'): what runs out
is then no inference of its own."""


_UNBATCHED = re.compile(r"\b(?:on|over|with|encod\w*|process\w*|generat\w*|run\w*|operat\w*) (?:all|the full|the whole|"
                        r"the entire|all the|all of the) (?:inputs?|dataset|data|texts|samples|prompts|sentences)\b[^.\n]{0,30}?"
                        r"\b(?:instead of|rather than) (?:a |one |in )?(?:single |each )?batch|\bbatch(?:ing|es)? (?:was |is |were |are )?"
                        r"not (?:applied|used|respected|honou?red)\b|\bignor\w* (?:the |my )?batch[_ ]?size\b|"
                        # the fix proposed in the report: the operation has no batching of its own ('Possible
                        # solution: add batching to the augmentation operation')
                        r"\badd(?:ing)? (?:a |mini-?)?batch(?:ing|es)? (?:to|for|in) (?:the |this |its )?\w+|"
                        r"\b(?:has|have|with|without|there is|there's) no (?:mini-?)?batching\b", re.I)
"""The report says the whole input set went through at once, the batch setting not applied ('operating on the full
inputs instead of a single batch', 'batching was not applied to model.generate')."""


_BEAMS = re.compile(r"\b(?:num_beams|num_return_sequences|num_beam_groups|n_beams|beam_size)\s*=\s*(\d+)")
MANY_BEAMS = 16
"""generate() runs every beam (and every returned sequence) as a row of its batch: a call with this many or more
multiplies the batch it is given by that much ('num_beams=128, num_return_sequences=128' over a batch of articles)."""


def _many_beams(t: str) -> re.Match | None:
    """The first beam or return-sequence count of MANY_BEAMS or more in the text, or None."""
    return next((m for m in _BEAMS.finditer(t) if int(m.group(1)) >= MANY_BEAMS), None)


def _inference_batch(c: Case) -> Cause | None:
    """An inference batch named in a report that trains nothing: all of it goes through the model in one forward."""
    t = c.inputs.error_text or ""
    m = _INFERENCE_BATCH.search(t) or _EMBED_SERVED.search(t) or _UNBATCHED.search(t) or _many_beams(t)
    if m is None or not c.has_oom or c.oom.kind in ("dispatch", "kv_cache") or E.MANY_INPUTS.search(t) or \
            (c.oom.kind == "cpu" and not E.forward_on_cpu(c)) or \
            c.oom.phase not in (None, "generation") or TRAINS_OR_EPOCHS.search(E.text(c)):
        return None
    return Cause("generation_batch", "the inference batch is too large for the card",
                 "every sequence of the batch goes through the model at once: activations (and any cache) grow with "
                 "batch x length", [f"the report says '{m.group(0)}'", "nothing is trained: the batch is the "
                                                                      "inference's own"]
                 + ([E.forward_on_cpu(c)] if c.oom.kind == "cpu" else []),
                 actions=[Action("lower the batch size of the embedding / reranking / transcription / generate call "
                                 "(and cap the input length)", "speed", id="batch")], strength="inferred")


def whole_set_at_once(c: Case) -> Cause | None:
    """The script sends every input of its dataset through the model in one call (script.py whole_set_forward): the
    batch is the dataset, whatever the card. An evaluation where the script grades the answers, else an inference."""
    whole = c.settings.get("whole_set_forward")
    if not (whole and c.has_oom and c.oom.kind == "cuda") or c.oom.phase not in (None, "eval", "generation"):
        return None
    graded = bool(c.inputs.script is not None and c.inputs.script.grades)
    return Cause("eval_batch" if graded else "generation_batch",
                 "the whole dataset goes through the model in one forward",
                 "every text tokenized together is one batch: activations (and logits, tokens x vocab) for all of them "
                 "at once", [f"the script: {whole}"],
                 actions=[Action("run the inputs in batches (for i in range(0, len(texts), 8): tokenize and run "
                                 "texts[i:i + 8], keeping only each batch's scores)", "speed: more forward calls",
                                 patch=["+ for i in range(0, len(texts), batch_size): enc = tokenizer(texts[i:i + "
                                        "batch_size], ...)"], id="eval_batch" if graded else "batch")],
                 strength="script", phase="eval" if graded else "generation")


def generation_batch(c: Case) -> Cause | None:
    """Out of memory while generating (predict_with_generate, do_predict, a generate() call): the KV cache grows with
    batch x (prompt + new tokens); or an inference batch the report names (_inference_batch)."""
    if c.oom.phase != "generation" and not (c.settings.get("predict_with_generate") or c.settings.get("do_predict")):
        return _inference_batch(c)
    if c.oom.phase not in ("generation", None):
        return None
    history = _HISTORY.search(c.inputs.error_text or "")
    return Cause("generation_batch", "generation holds a KV cache per sequence",
                 "generate() keeps keys and values for every layer, sequence and token: batch x (prompt + new tokens)",
                 [f"phase: generation ({c.oom.phase_evidence or 'predict_with_generate / do_predict is set'})"]
                 + ([f"the report says '{history.group(0)}': every turn's prompt carries the whole history, so the "
                     f"cache grows turn by turn"] if history else []),
                 actions=([Action("pass a bounded history (the last few turns, e.g. history=history[-4:]) or cap the "
                                  "prompt's length", "quality: less context", id="cap_length")] if history else [])
                 + [Action("lower per_device_eval_batch_size (and max_new_tokens) for prediction", "speed",
                                 patch=["+ per_device_eval_batch_size=1", "+ max_new_tokens=256"], id="eval_batch")],
                 strength="inferred")


_CACHE_AT_MAX = re.compile(r"(?:kv[_ -]?cache|cache)\b[^.\n]{0,50}?\b(?:(?:with|at|for|of|to) (?:the |its )?)?max(?:imum)?"
                           r"[_ ]?(?:cache[_ ]?)?seq(?:uence)?[_ ]?len(?:gth)?|max[_ ]cache[_ ]seq[_ ]len|max_cache_len|"
                           r"max(?:imum)?[_ ]?seq(?:uence)?[_ ]?len(?:gth)?[^.\n]{0,30}?\b(?:kv[_ -]?)?cache\b|"
                           r"(?:setup|set up|creat\w*|allocat\w*|initiali[sz]\w*)[_ ]caches?\b[^.\n]{0,40}max", re.I)
"""A KV cache set up for the model's whole maximum sequence length ('it tries to create the kv cache with max
sequence length', 'Set max cache seq len in generate recipe'): torchtune's recipes and a static cache allocate keys and
values for every position up front, 128k for Llama 3.1, whatever the prompt needs."""


def cache_at_max_length(c: Case) -> Cause | None:
    """A KV cache allocated at the model's maximum sequence length for generation or evaluation, by a library's own
    setup (not a serving engine's reservation, which vllm_memory reads)."""
    m = _CACHE_AT_MAX.search(c.inputs.error_text or "")
    if not (c.has_oom and m) or E.uses_vllm(c) or c.oom.phase in ("load", "save", "merge", "tokenization"):
        return None
    return Cause("generation_batch", "the KV cache is allocated for the model's whole maximum length",
                 "keys and values for every layer and every position up to max_seq_len are allocated before the "
                 "first token: at 128k positions that is more than the weights", [f"the report says '{m.group(0)}'"],
                 actions=[Action("size the cache to the prompt plus the new tokens (max_cache_len / the recipe's "
                                 "max cache length), or skip it where nothing is generated (torchtune: "
                                 "enable_kv_cache: false)", "none", patch=["+ max_cache_len = prompt + max_new_tokens"],
                                 id="cap_length")], strength="inferred", phase=c.oom.phase)
