"""Everything the doctor knows about one failure, gathered once from the inputs: the parsed error, the model shape,
the user's Setup, the GPU budget, the estimate, the script findings and the run directory's record. Rules and fixes
read a Case; none of them re-parses anything."""

import re
from dataclasses import dataclass, field

from qlorafit.core import catalog
from qlorafit.core import options as O
from qlorafit.doctor import phase, prose
from qlorafit.doctor.antipatterns import Context, Finding, check_script
from qlorafit.doctor.parse import GPU_MEMORY_NAMED, OomText, parse
from qlorafit.doctor.rundir import RunInfo
from qlorafit.doctor.script import ScriptInfo
from qlorafit.doctor.settings import normalize, setup_from_settings
from qlorafit.core.plan import setup_from_config
from qlorafit.errors import UserError
from qlorafit.core.estimate import Estimate, Setup, estimate
from qlorafit.core.shapes import ModelShape
from qlorafit.core.sizes import GIB, fmt_gib


@dataclass
class Inputs:
    """What the user gave. Any combination; all optional."""

    error_text: str = ""
    script: ScriptInfo | None = None
    config: object | None = None  # a qlorafit Config (from --config or the run directory's config.yaml)
    settings: dict = field(default_factory=dict)
    """HF-named settings from elsewhere (another trainer's YAML, a corpus fixture); the script's win over these."""
    partial_settings: bool = False
    """The settings were picked out of the pasted text (a command line in a log), not a whole config: a setting
    missing from them says nothing."""
    run: RunInfo | None = None
    model: str | None = None
    gpu: str | None = None
    thread_prior: bool = True
    """Where the rules only guess, let the word model learned from labelled public threads pick the cause
    (thread_prior.py); False keeps the rules' order (`qlorafit doctor --rules-only`)."""


@dataclass
class Case:
    inputs: Inputs
    oom: OomText
    shape: ModelShape | None = None
    setup: Setup | None = None
    settings: dict = field(default_factory=dict)
    assumptions: list = field(default_factory=list)
    gpu: catalog.GPU | None = None
    budget_bytes: int | None = None
    budget_name: str = ""
    est: Estimate | None = None
    findings: list = field(default_factory=list)
    from_user: bool = False  # the setup came from the user's script, config or settings (not only library defaults)
    notes: list = field(default_factory=list)
    """What is missing, said plainly: what to paste or pass for a better answer."""

    @property
    def has_oom(self) -> bool:
        return self.oom.kind is not None or bool(self.inputs.run and self.inputs.run.oom_events)

    @property
    def full_fine_tune(self) -> bool:
        """The settings say every weight is trained (finetuning_type: full, read from a config, or from a whole script
        that makes no adapter). The estimator sizes LoRA and QLoRA runs, so for such a run its peak leaves out every
        weight's gradients and Adam state: no fix is sized or applied by it."""
        return str(self.settings.get("finetuning_type", "")).lower() == "full"

    @property
    def over_budget(self) -> bool:
        return bool(self.est and self.budget_bytes and self.est.peak_bytes > self.budget_bytes)

    def estimate_with(self, setup: Setup) -> Estimate:
        return estimate(self.shape, setup)


def _budget(c: Case) -> None:
    if c.inputs.gpu:
        c.gpu = catalog.get_gpu(c.inputs.gpu)
        c.budget_bytes, c.budget_name = c.gpu.memory_bytes, c.gpu.name
        return
    total = c.oom.total_bytes or c.oom.log_settings.get("gpu_total_bytes")
    if total:
        c.gpu = catalog.find_gpu(total)
        c.budget_bytes = total
        c.budget_name = (f"{c.gpu.name} (matched from the {fmt_gib(total)} total capacity in the error)" if c.gpu
                         else f"{fmt_gib(total)} (the total capacity in the error)")
        return
    said = prose.gpus(c.inputs.error_text or "")
    if said.memory_bytes:  # the words name a card: the rules weigh it, but no estimate is sized against it
        c.notes.append(f"the report names a {fmt_gib(said.memory_bytes)} card ('{said.name or 'in words'}'): pass --gpu "
                       f"NAME to size the fixes against it")
        return
    c.notes.append("no GPU known: pass --gpu NAME (or paste the full OOM message, which gives the total capacity)")


def _model(c: Case) -> None:
    i = c.inputs
    if i.model:
        c.shape = catalog.resolve_model(i.model)  # named explicitly: a bad name is the user's error to see
        return
    cands = [("the script" if i.script is not None else "the settings", c.settings.get("model"))]
    if i.config is not None:
        cands.insert(0, ("the config", i.config.model.name_or_path))
    for where, name in cands:
        if not name:
            continue
        quoted = re.search(r"[\"']([^\"'\s]+)[\"']", str(name))  # 'from_pretrained("org/name"' read off a pasted line
        name = quoted.group(1) if quoted else name
        try:
            c.shape = catalog.resolve_model(str(name))
            return
        except (UserError, ValueError):  # ValueError: not even a valid Hub id (huggingface_hub's validation)
            loose = _catalogue_variant(str(name))
            if loose:
                c.shape = catalog.resolve_model(loose)
                c.notes.append(f"model '{name}' (from {where}) sized as catalogue '{loose}': same architecture")
                return
            c.notes.append(f"model '{name}' (from {where}) is not in the catalogue or the local HF cache: the estimate "
                           f"needs --model (a catalogue name like llama-3.1-8b, or a directory with its config.json)")
            return
    size = prose.model_params_b(c.inputs.error_text or "")
    if size:  # the words give the model's size: the rules weigh it, but no estimate has its shape
        c.notes.append(f"the report names a {size:g}B model: pass --model NAME (or --script with the from_pretrained "
                       f"call) for an estimate of its shape")
        return
    c.notes.append("no model known: pass --model NAME, or --script with the from_pretrained call, for an estimate")


_VARIANT = re.compile(r"(-instruct|-chat|-it|-hf|-bnb-4bit|-unsloth|-4bit|-base|-v\d+(?:\.\d+)?)+$")


def _catalogue_variant(name: str) -> str | None:
    """'meta-llama/Llama-3.1-8B-Instruct' or 'unsloth/llama-3-8b-bnb-4bit' -> 'llama-3.1-8b' / 'llama-3-8b': an
    instruct, chat or pre-quantized release has the shape of its base model."""
    leaf = _VARIANT.sub("", name.strip().rsplit("/", 1)[-1].lower())
    leaf = leaf.replace("meta-llama-", "llama-")
    derived = []
    for cname, m in catalog._load("models.json")["models"].items():  # the catalogue's own table (name -> hf_id)
        hf_leaf = _VARIANT.sub("", m["hf_id"].rsplit("/", 1)[-1].lower()).replace("meta-llama-", "llama-")
        if leaf in (cname, hf_leaf):
            return cname
        # a folder of the user's own named after its base ('qwen3-8b-sft-merged', 'llama-3-8b_finetuned'): the base's
        # shape, by the longest catalogue name it starts with
        derived += [(len(n), cname) for n in (cname, hf_leaf) if re.match(re.escape(n) + r"[-_]", leaf)]
    return max(derived)[1] if derived else None


def _setup(c: Case) -> None:
    i = c.inputs
    c.from_user = bool(i.config is not None or i.script is not None or (i.settings and not i.partial_settings))
    if i.config is not None:
        c.setup = setup_from_config(i.config, c.gpu.bf16 if c.gpu else None)
        return
    merged = dict(normalize(i.settings))
    if i.script is not None:
        merged.update(normalize(i.script.settings))
        if isinstance(merged.get("deepspeed"), str) and "zero_stage" not in merged:
            from qlorafit.doctor.foreign import named_config_facts

            merged.update(named_config_facts(merged["deepspeed"]))  # the script names its config file only
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):  # what the trainer printed it ran with
        if key in c.oom.log_settings:
            merged[key] = c.oom.log_settings[key]
    c.settings = merged
    said = prose.quant_said(f"{i.error_text or ''}\n{i.script.text if i.script is not None else ''}")
    if not c.from_user:
        # nothing posted says how they loaded it: what the words say (4-bit, QLoRA, 8-bit), else 16-bit, every
        # trainer's default, the same reading the numbers rules make (evidence.weights_quantized)
        merged = {"quant": said, "bf16": True, **merged}
    if merged or c.shape is not None:
        c.setup, c.assumptions = setup_from_settings(merged)
        if not c.from_user:
            q = O.quant(said)
            c.assumptions.insert(0, "no script or config: assumed " + (
                "16-bit weights (every trainer's default; say 4-bit or QLoRA if you quantized)" if q.bits >= 16
                else f"{q.help} weights, as the report says") + " and bf16")
        if not (i.script or (i.settings and not i.partial_settings)):
            c.notes.append("no script or config given: the estimate uses transformers' defaults (listed under "
                           "assumptions); pass --script train.py for your actual settings")


_GPU_NAMED = re.compile(r"\bGPU\s?\d+\b|\bcuda:\d|显存|\bVRAM\b", re.I)
_FSDP = re.compile(r"\bFSDP2?\b|\bfully_shard\b|FullyShardedDataParallel|fsdp_config|distributed_type:\s*FSDP", re.I)


def _fsdp_load_is_host_ram(c: Case) -> None:
    """An out-of-memory told in words while loading under FSDP is host RAM: FSDP builds the model on the CPU
    (from_pretrained with no device_map), every rank reading the full checkpoint into RAM unless only rank 0 does
    (fsdp_cpu_ram_efficient_loading); the GPUs get their shards only after the load."""
    o = c.oom
    if o.kind != "cuda" or o.form != "words" or o.phase != "load":
        return
    if not (c.settings.get("fsdp") or str(c.settings.get("distributed_type", "")).upper() == "FSDP"
            or _FSDP.search(c.inputs.error_text or "")):
        return
    t = c.inputs.error_text or ""
    if _GPU_NAMED.search(t) or GPU_MEMORY_NAMED.search(t) or re.search(r"\bCUDA (?:OOM|out of memory)", t, re.I):
        return  # 'only GPU0 loads the model and OOMs', 'CUDA OOM': the report says which memory ran out: a GPU's
    o.kind = "cpu"
    o.form = "cpu"
    o.phase_evidence += "; under FSDP the weights are read into host RAM by every rank before sharding"


def _tokenization_is_host_ram(c: Case) -> None:
    """An out-of-memory told in words while tokenizing is host RAM: datasets.map and the tokenizers run on the CPU,
    every worker process holding its own copy, unless the report names a GPU."""
    o = c.oom
    if o.kind == "cuda" and o.form == "words" and o.phase == "tokenization" and \
            not _GPU_NAMED.search(c.inputs.error_text or ""):
        o.kind, o.form = "cpu", "cpu"
        o.phase_evidence += "; tokenization runs on the CPU"


def _gpu_oom_is_not_tokenization(c: Case) -> None:
    """A GPU's memory that ran out is not tokenization's, which runs on the CPU: where only the report's words, a log
    line or a progress bar place it there ('预处理的时候max_len=200, 微调的时候爆显存' names preprocessing for its
    setting; a 'during map operation' line pasted with a CUDA message from later), the phase is unknown. A traceback
    whose frames are in the map (a GPU model called inside datasets.map) keeps it (its evidence is the frame's name)."""
    o = c.oom
    if o.kind == "cuda" and o.phase == "tokenization" and (" " in o.phase_evidence or not o.phase_evidence):
        o.phase, o.phase_evidence = None, ""


def _stalled_load_is_host_ram(c: Case) -> None:
    """A load that stalls (stuck, hangs, frozen) with no out-of-memory said is the host paging its RAM to disk: a GPU
    that runs out raises at once, while a host short of RAM swaps (or grows its pagefile) and crawls."""
    o = c.oom
    t = c.inputs.error_text or ""
    if o.form == "presumed" and o.phase == "load" and phase.STALL.search(t) \
            and not (_GPU_NAMED.search(t) or GPU_MEMORY_NAMED.search(t)):
        o.kind = "cpu"
        o.phase_evidence += "; a load that stalls without an error is the host swapping, short of RAM"


def _generating_eval_is_generation(c: Case) -> None:
    """An evaluation run with predict_with_generate (Seq2SeqTrainer, LLaMA-Factory) generates: its memory is the KV
    cache of batch x (prompt + new tokens), and its predictions are token ids, so no logits accumulate."""
    o = c.oom
    if o.phase == "eval" and c.settings.get("predict_with_generate") is True:
        o.phase = "generation"
        o.phase_evidence += "; predict_with_generate is set, so the evaluation generates"


_TRAINING_DONE = re.compile(r"['\"]train_runtime['\"]\s*:|\btrain_runtime\s*=")
"""The Trainer's summary line, printed when train() returns ({'train_runtime': ...}): training has finished."""
_MERGES = re.compile(r"merge_and_unload|merge_adapter|PeftModel\.from_pretrained")


def _load_after_training_is_the_merge(c: Case) -> None:
    """A model loaded after the log shows training finished: the base loaded again for the merge, beside the trained
    model and its optimizer state that the same process still holds (the tutorials' train-then-merge notebook). With a
    script, only where it merges."""
    o = c.oom
    script = c.inputs.script.text if c.inputs.script is not None else None
    if o.phase == "load" and _TRAINING_DONE.search(c.inputs.error_text or "") and \
            (script is None or _MERGES.search(script)):
        o.phase = "merge"
        o.phase_evidence += ("; training had finished (train_runtime in the log): a model loaded again for the merge, "
                             "beside the trained one")


def _kept_logits_is_the_eval(c: Case) -> None:
    """A script of the user's own that keeps every batch's logits in a list and trains nothing is an evaluation loop:
    that is where its memory grows, whatever frames the last forward shows."""
    o = c.oom
    kept = c.settings.get("keeps_logits")
    if kept and o.phase in (None, "first_step", "training") and c.inputs.script is not None \
            and not c.inputs.script.trains:
        o.phase = "eval"
        o.phase_evidence = f"the script evaluates, keeping every batch's outputs ({kept})"


def _bar_of_a_script_that_trains_nothing(c: Case) -> None:
    """A step read from a bare progress bar ('0/136') in a script that trains nothing (no trainer, no backward, no
    optimizer step): the bar counts the script's own inputs, not training steps. An evaluation where the script grades
    what the model does (perplexity, accuracy, a metric), else an inference."""
    o = c.oom
    script = c.inputs.script
    told = (c.inputs.error_text or "") + "\n" + (script.text if script is not None else "")
    if script is None or script.trains or o.phase not in ("first_step", "later_step", "training") or \
            re.search(r"\btrain|fine-?tun|finetun|\bepochs?\b|\.fit\(|quantiz|calibrat|训练|微调|量化", told, re.I) or \
            "progress bar" not in o.phase_evidence or re.search(r"in (?:training_step|_inner_training_loop|train)\b|"
                                                                r"backward", c.inputs.error_text or ""):
        return
    graded = script.grades
    o.phase = "eval" if graded else "generation"
    o.step = None
    o.phase_evidence = (f"the script trains nothing and {'grades the outputs' if graded else 'runs the model'} "
                        f"('{graded.group(0)}')" if graded else "the script trains nothing: it runs the model") + \
        ": its progress bar counts inputs, not steps"


def build_case(inputs: Inputs) -> Case:
    """Parse, resolve and estimate once."""
    c = Case(inputs=inputs, oom=parse(inputs.error_text or ""))
    if inputs.script is not None:
        c.settings = dict(inputs.script.settings)
    else:
        c.settings = normalize(inputs.settings)
    _fsdp_load_is_host_ram(c)
    _tokenization_is_host_ram(c)
    _gpu_oom_is_not_tokenization(c)
    _stalled_load_is_host_ram(c)
    _generating_eval_is_generation(c)
    _load_after_training_is_the_merge(c)
    _kept_logits_is_the_eval(c)
    _bar_of_a_script_that_trains_nothing(c)
    _budget(c)
    _model(c)
    _setup(c)
    if c.shape is not None and c.setup is not None:
        c.est = estimate(c.shape, c.setup)
    if inputs.script is not None:
        ctx = Context(gpu_name=c.gpu.name if c.gpu else "", gpu_bf16=c.gpu.bf16 if c.gpu else None,
                      distributed=c.oom.distributed)
        c.findings = check_script(inputs.script, ctx)
    if not inputs.error_text and inputs.run is None and inputs.script is None and inputs.config is None \
            and not inputs.settings:
        c.notes.append("nothing to examine: paste the error (stdin or --error FILE), or give --script, --config or --run")
    return c


def gib(n: int | None) -> str:
    return "?" if n is None else fmt_gib(n)


__all__ = ["Inputs", "Case", "build_case", "Finding", "GIB", "gib"]
