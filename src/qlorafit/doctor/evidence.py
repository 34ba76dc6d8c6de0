"""Small facts the rules ask about a Case, each read from what the user gave (error text, script, config, settings):
the launch (processes, ZeRO stage, FSDP), vLLM, quantization, the precision flags. Plain functions, no state."""

import re

from qlorafit.core import options as O
from qlorafit.doctor.case import Case
from qlorafit.doctor.settings import Depends


def text(c: Case) -> str:
    """The pasted error text and the posted script's text, where the rules look for names and frames."""
    script = c.inputs.script.text if c.inputs.script is not None else ""
    return (c.inputs.error_text or "") + ("\n" + script if script else "")


def setting(c: Case, key: str, default=None):
    v = c.settings.get(key, default)
    return default if v is None else v


def world_size(c: Case) -> int | None:
    """Processes the launch starts (torchrun/accelerate/deepspeed flags, an accelerate config, [rankN] prefixes)."""
    ws = setting(c, "world_size") or c.oom.log_settings.get("world_size")
    if ws == "several":
        return 2
    if isinstance(ws, int):
        return ws
    ranks = [int(r) for r in re.findall(r"\[rank(\d+)\]", c.inputs.error_text or "")]
    if ranks and max(ranks) > 0:
        return max(ranks) + 1
    return None


def gpu_count(c: Case) -> int | None:
    """GPUs the report says the machine has ('8xH100', '4 x A100', '8*A100', '4卡', '2 GPUs'): not processes."""
    m = re.search(r"(\d+)\s*(?:[x×*]\s*(?:NVIDIA\s*)?[A-Z][\w-]*|张?卡|\s?GPUs\b)", c.inputs.error_text or "")
    return int(m.group(1)) if m else None


def zero_stage(c: Case) -> int | None:
    z = setting(c, "zero_stage")
    return z if isinstance(z, int) else None


def sharded(c: Case) -> bool:
    """The weights are sharded across the GPUs: ZeRO-3 or FSDP (not ZeRO-1/2, which copy the weights to every GPU)."""
    return zero_stage(c) == 3 or bool(setting(c, "fsdp")) or str(setting(c, "distributed_type", "")).upper() == "FSDP"


def replicates(c: Case) -> bool:
    """The launch is known to replicate the weights: ZeRO stage 0-2, or a whole config (accelerate/trainer) that sets
    neither ZeRO-3 nor FSDP. Not knowing is not evidence (torchtune's distributed recipes shard with FSDP)."""
    if sharded(c) or re.search(r"fsdp|FullyShardedDataParallel|_distributed\.py", text(c), re.I):
        return False
    z = zero_stage(c)
    if z in (0, 1, 2):
        return True
    whole = bool(c.inputs.settings) and not c.inputs.partial_settings
    return whole and (str(setting(c, "distributed_type", "")).upper() in ("MULTI_GPU", "DEEPSPEED", "NO", "")
                      and world_size(c) is not None)


def uses_vllm(c: Case) -> bool:
    t = c.inputs.error_text or ""
    return bool(setting(c, "use_vllm") is True or setting(c, "vllm_gpu_memory_utilization") is not None
                or setting(c, "fast_inference") is True or re.search(r"\bvllm[./\\]|vllm\.entrypoints|\bself\.llm = LLM\(|"
                                                                     r"--gpu-memory-utilization|\bvLLM\b", t)
                or (c.inputs.script is not None and c.inputs.script.first("LLM") is not None))


def quantized(c: Case) -> bool | None:
    """True: 4-/8-bit loading is asked for; False: a script or config that loads without it; None: not known."""
    if c.from_user and c.setup is not None and O.quant(c.setup.quant).bits < 16:  # not the QLoRA the doctor assumes
        return True
    if re.search(r"load_in_4bit\s*[=:]\s*True|load[_-]in[_-](?:4|8)bit(?!\s*[=:]\s*False)|bnb[-_]4bit|BitsAndBytesConfig|"
                 r"quantization_bit|\bnf4\b", text(c), re.I):
        return True
    if c.from_user and (c.inputs.script is not None and c.inputs.script.model_call is not None):
        return False
    return None


def loading_known(c: Case) -> bool:
    """The input says how the model is loaded (a from_pretrained call, or a trainer config naming the model or its
    quantization): only then does a missing 4-bit flag mean the model is not quantized. An accelerate or DeepSpeed
    config alone says nothing about it."""
    if c.inputs.config is not None or (c.inputs.script is not None and c.inputs.script.model_call is not None):
        return True
    return any(k in c.settings for k in ("model", "quant", "load_in_4bit", "load_in_8bit", "quantization_bit",
                                         "torch_dtype", "finetuning_type"))


def precision(c: Case) -> str | None:
    """'16-bit' when bf16/fp16 is on (or set from an expression), 'fp32' when the flags are off, absent or commented
    out and nothing else sets a 16-bit dtype, None when the input does not say."""
    s = c.settings
    flags = [s.get("bf16"), s.get("fp16")]
    if any(f is True or isinstance(f, Depends) for f in flags):
        return "16-bit"
    mixed = str(s.get("mixed_precision") or s.get("precision") or "").lower()
    if mixed.startswith(("bf16", "fp16")):
        return "16-bit"
    dtype = str(s.get("torch_dtype") or s.get("dtype") or "").lower()
    if c.inputs.script is None and not c.from_user:
        return None
    if any(k in s for k in ("bf16", "fp16", "commented_bf16", "commented_fp16")) or c.inputs.script is not None:
        if "16" in dtype and "float32" not in dtype:
            return None  # 16-bit weights without autocast: not the fp32 case
        return "fp32"
    return None
