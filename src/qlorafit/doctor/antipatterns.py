"""Known mistakes in QLoRA training scripts, each a small check over a ScriptInfo that returns Findings or nothing.

Every finding says why it matters and what to write instead, as '- old / + new' patch lines. The list CHECKS is run
in order; add a check by adding a function. Nothing here runs the script.
"""

import re
from dataclasses import dataclass, field

from qlorafit.doctor.script import CallRef, ScriptInfo

LONG_SEQ = 1024
"""From this many tokens, keeping every layer's activations (no checkpointing) dominates QLoRA memory."""


@dataclass
class Finding:
    id: str
    line: int
    reason: str
    fix: str
    patch: list = field(default_factory=list)
    breaks_run: bool = False
    """The script raises before training on current transformers/TRL (a removed or rejected argument)."""


@dataclass
class Context:
    """What the checks know beyond the script: the GPU (when named or matched) and what the error text said."""

    gpu_name: str = ""
    gpu_bf16: bool | None = None
    distributed: bool = False


def _trainers(info: ScriptInfo) -> list[CallRef]:
    return info.calls.get("SFTTrainer", []) + info.calls.get("Trainer", [])


def _args_calls(info: ScriptInfo) -> list[CallRef]:
    return info.calls.get("TrainingArguments", []) + info.calls.get("SFTConfig", []) + \
        info.calls.get("Seq2SeqTrainingArguments", [])


def _trains(info: ScriptInfo) -> bool:
    return bool(_trainers(info)) or bool(re.search(r"\.train\(|\.backward\(", info.text))


def use_cache(info: ScriptInfo, ctx: Context) -> list[Finding]:
    out = []
    m = info.model_call
    if m is not None and m.value("use_cache") is True and _trains(info):
        out.append(Finding("use_cache", m.line, "use_cache=True keeps a KV cache of every layer during the training "
                           "forward; it is useless there and conflicts with gradient checkpointing",
                           "pass use_cache=False to from_pretrained",
                           [f"- {m.owner}.from_pretrained(use_cache=True)", f"+ {m.owner}.from_pretrained(use_cache=False)"]))
    for target, (line, src) in info.assigns.items():
        if target.endswith("config.use_cache") and src == "True" and _trains(info):
            out.append(Finding("use_cache", line, "model.config.use_cache = True keeps a KV cache during training",
                               "set model.config.use_cache = False before training",
                               [f"- {target} = True", f"+ {target} = False"]))
    return out


def fp16_on_bf16_gpu(info: ScriptInfo, ctx: Context) -> list[Finding]:
    if ctx.gpu_bf16 is False:
        return []
    where = ("an Ampere or newer GPU (RTX 30xx/40xx, A100, H100...)" if ctx.gpu_bf16 is None
             else f"the {ctx.gpu_name}, which supports bf16")
    out = []
    for ref in _args_calls(info):
        if ref.value("fp16") is True:
            out.append(Finding("fp16_on_bf16_gpu", ref.line, f"fp16 overflows (NaN/inf loss, 'Attempting to unscale "
                               f"FP16 gradients') where bf16 does not, at the same memory, on {where}",
                               "train in bf16", [f"- {ref.name}(fp16=True)", f"+ {ref.name}(bf16=True, fp16=False)"]))
    bnb = info.first("BitsAndBytesConfig")
    if bnb is not None and str(bnb.value("bnb_4bit_compute_dtype")) in ("torch.float16", "torch.half"):
        out.append(Finding("fp16_on_bf16_gpu", bnb.line, f"4-bit weights dequantized to fp16 overflow more easily; "
                           f"bf16 costs the same memory on {where}", "compute in bf16",
                           ["- BitsAndBytesConfig(bnb_4bit_compute_dtype=torch.float16)",
                            "+ BitsAndBytesConfig(bnb_4bit_compute_dtype=torch.bfloat16)"]))
    return out


def load_in_4bit_kwarg(info: ScriptInfo, ctx: Context) -> list[Finding]:
    m = info.model_call
    if m is None or m.owner.startswith("Fast"):  # Unsloth's loader takes load_in_4bit itself
        return []
    out = []
    for k in ("load_in_4bit", "load_in_8bit"):
        if m.value(k) is True:
            bits = "4bit" if k == "load_in_4bit" else "8bit"
            extra = ', bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16' if bits == "4bit" else ""
            out.append(Finding("load_in_4bit_kwarg", m.line, f"{k}=True passed to from_pretrained is rejected by "
                               "current transformers (removed in v5): the quantization must come in a BitsAndBytesConfig",
                               "pass quantization_config=BitsAndBytesConfig(...)",
                               [f"- {m.owner}.from_pretrained({k}=True)",
                                f"+ {m.owner}.from_pretrained(quantization_config=BitsAndBytesConfig({k}=True{extra}))"],
                               breaks_run=True))
    return out


# (call, argument, what replaced it, patch target): arguments current TRL/transformers no longer accept.
REMOVED = (
    ("SFTTrainer", "tokenizer", "processing_class", "SFTTrainer(processing_class={v})"),
    ("Trainer", "tokenizer", "processing_class", "Trainer(processing_class={v})"),
    ("SFTTrainer", "max_seq_length", "SFTConfig(max_length=...)", "SFTConfig(max_length={v})"),
    ("SFTConfig", "max_seq_length", "max_length", "SFTConfig(max_length={v})"),
    ("SFTTrainer", "dataset_text_field", "SFTConfig(dataset_text_field=...)", "SFTConfig(dataset_text_field={v})"),
    ("SFTTrainer", "packing", "SFTConfig(packing=...)", "SFTConfig(packing={v})"),
    ("TrainingArguments", "warmup_ratio", "warmup_steps", "TrainingArguments(warmup_steps=<steps x {v}>)"),
    ("SFTConfig", "warmup_ratio", "warmup_steps", "SFTConfig(warmup_steps=<steps x {v}>)"),
    ("TrainingArguments", "evaluation_strategy", "eval_strategy", "TrainingArguments(eval_strategy={v})"),
    ("SFTConfig", "evaluation_strategy", "eval_strategy", "SFTConfig(eval_strategy={v})"),
)


def removed_args(info: ScriptInfo, ctx: Context) -> list[Finding]:
    out = []
    for call, arg, new, target in REMOVED:
        for ref in info.calls.get(call, []):
            if arg in ref.kwargs:
                v = ref.src(arg)
                out.append(Finding("removed_args", ref.line, f"{call}({arg}=...) was removed from current "
                                   f"TRL/transformers: the script stops with a TypeError before training",
                                   f"use {new}", [f"- {call}({arg}={v})", "+ " + target.format(v=v)], breaks_run=True))
    return out


def no_checkpointing(info: ScriptInfo, ctx: Context) -> list[Finding]:
    s = info.settings
    length = s.get("max_length")
    if s.get("gradient_checkpointing") or not isinstance(length, int) or length < LONG_SEQ or not _trains(info):
        return []
    ref = (_args_calls(info) or [None])[0]
    name = ref.name if ref else "TrainingArguments"
    return [Finding("no_checkpointing", ref.line if ref else 0, f"without gradient checkpointing every layer keeps "
                    f"its activations for backward; at {length} tokens they dominate the memory",
                    "turn gradient checkpointing on (about 30% slower, far less memory)",
                    [f"- {name}(gradient_checkpointing={s.get('gradient_checkpointing', False)})",
                     f"+ {name}(gradient_checkpointing=True)"])]


def eval_accumulation(info: ScriptInfo, ctx: Context) -> list[Finding]:
    s = info.settings
    has_eval = s.get("has_eval") or str(s.get("eval_strategy", s.get("evaluation_strategy", "no"))) not in ("no", "None")
    if not has_eval or s.get("eval_accumulation_steps") or s.get("prediction_loss_only") or s.get("preprocess_logits"):
        return []
    ref = (_args_calls(info) or [None])[0]
    name = ref.name if ref else "TrainingArguments"
    why = ("with compute_metrics the Trainer keeps every eval batch's logits (tokens x vocab) on the GPU until the "
           "eval loop ends" if s.get("compute_metrics") else
           "if a compute_metrics is added, the Trainer keeps every eval batch's logits (tokens x vocab) on the GPU")
    return [Finding("eval_accumulation", ref.line if ref else 0, why,
                    "set eval_accumulation_steps (moves logits to the CPU every N steps) or prediction_loss_only=True",
                    [f"+ {name}(eval_accumulation_steps=4)", f"+ {name}(prediction_loss_only=True)  # if only the loss is needed"])]


def device_map_ddp(info: ScriptInfo, ctx: Context) -> list[Finding]:
    m = info.model_call
    if m is None or m.value("device_map") != "auto":
        return []
    ddp = ctx.distributed or re.search(r"torchrun|accelerate launch|LOCAL_RANK|local_rank|torch\.distributed|"
                                       r"ddp_find_unused_parameters|Accelerator\(", info.text)
    if not ddp:
        return []
    return [Finding("device_map_ddp", m.line, "device_map='auto' spreads one model over every visible GPU, while DDP "
                    "starts one process per GPU: each process then loads the model onto all GPUs",
                    "under torchrun/accelerate launch, give each process its own GPU",
                    ['- from_pretrained(device_map="auto")',
                     '+ from_pretrained(device_map={"": int(os.environ.get("LOCAL_RANK", 0))})'])]


def pad_token(info: ScriptInfo, ctx: Context) -> list[Finding]:
    mid = str(info.model_id or "").lower()
    if not re.search(r"llama|mistral|mixtral", mid) or not _trains(info):
        return []
    if any(t.endswith("pad_token") or t.endswith("pad_token_id") for t in info.assigns) or \
            re.search(r"pad_token", info.text):
        return []
    return [Finding("pad_token", info.model_call.line if info.model_call else 0, "Llama and Mistral tokenizers have "
                    "no pad token: batching more than one sample raises 'Asking to pad but the tokenizer does not have "
                    "a padding token'", "set one before building the trainer",
                    ["+ tokenizer.pad_token = tokenizer.eos_token"])]


def packing_memory(info: ScriptInfo, ctx: Context) -> list[Finding]:
    if info.settings.get("packing") is not True:
        return []
    refs = info.calls.get("SFTConfig", []) + info.calls.get("SFTTrainer", [])
    line = next((r.line for r in refs if "packing" in r.kwargs), 0)
    return [Finding("packing_memory", line, "packing fills every row to max_length: it saves padding compute, not "
                    "memory; the peak is that of full rows of max_length tokens", "if memory is the concern, lower "
                    "max_length or the batch; packing is not a memory saving")]


CHECKS = (load_in_4bit_kwarg, removed_args, use_cache, fp16_on_bf16_gpu, no_checkpointing, eval_accumulation,
          device_map_ddp, pad_token, packing_memory)


def check_script(info: ScriptInfo, ctx: Context) -> list[Finding]:
    """Every finding of every check, in CHECKS order."""
    return [f for check in CHECKS for f in check(info, ctx)]
