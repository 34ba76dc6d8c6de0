"""From what the user ran to the estimator's Setup: a transformers/TRL/PEFT settings dict, or a qlorafit Config.

The settings dict uses the Hugging Face argument names (per_device_train_batch_size, max_length, r, optim, ...), the
way a script spells them; axolotl and LLaMA-Factory names are folded onto them by ALIASES. Where the user set nothing,
the library default is used and said so in `assumptions`, so a report never hides a guess.
"""

from qlorafit.core import options as O
from qlorafit.core.setup import Setup
from qlorafit.core.shapes import ALL_LINEARS, ATTN_LINEARS
from qlorafit.core.shapes import LORA_TARGET_ALIASES

# Other trainers' names for the same settings (axolotl, LLaMA-Factory, older TRL and transformers, Unsloth, OpenRLHF,
# DeepSpeed, vLLM, the launchers).
ALIASES = {
    "micro_batch_size": "per_device_train_batch_size", "batch_size": "per_device_train_batch_size",
    "per_gpu_train_batch_size": "per_device_train_batch_size", "train_micro_batch_size_per_gpu":
    "per_device_train_batch_size", "micro_train_batch_size": "per_device_train_batch_size",
    "per_gpu_eval_batch_size": "per_device_eval_batch_size", "eval_batch_size": "per_device_eval_batch_size",
    "sequence_len": "max_length", "cutoff_len": "max_length", "max_seq_length": "max_length",
    "max_seq_len": "max_length", "model_max_length": "max_length", "max_len": "max_length", "seq_len": "max_length",
    "lora_r": "r", "lora_rank": "r", "lora_target": "target_modules",
    "lora_target_modules": "target_modules", "optimizer": "optim", "sample_packing": "packing",
    "base_model": "model", "model_name_or_path": "model", "model_name": "model", "model_id": "model",
    "pretrain": "model", "model_path_to_load": "model",
    "gradient_accumulation": "gradient_accumulation_steps", "attn_impl": "attn_implementation",
    "gpu_memory_utilization": "vllm_gpu_memory_utilization", "max_model_len": "vllm_max_model_len",
    "nproc_per_node": "world_size", "num_processes": "world_size", "num_gpus": "world_size",
    "preprocessing_num_workers": "map_workers", "dataset_num_proc": "map_workers", "num_proc": "map_workers",
    "evaluation_strategy": "eval_strategy", "enable_gradit_checkpoing": "gradient_checkpointing",
}
_EXTRA_KEYS = (  # names read as they are (not estimator inputs, but evidence for the rules)
    "per_device_eval_batch_size", "eval_accumulation_steps", "prediction_loss_only", "predict_with_generate",
    "do_predict", "do_eval", "eval_strategy", "eval_steps", "val_size", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization",
    "vllm_max_model_len", "num_generations", "max_completion_length", "max_prompt_length", "max_new_tokens",
    "ds3_gather_for_generation", "deepspeed", "zero_stage", "offload_param", "offload_optimizer", "fsdp",
    "zero3_init_flag", "world_size", "distributed_type", "finetuning_type", "map_workers", "torch_dtype", "dtype",
    "flash_attn", "use_unsloth", "quantization_bit", "load_in_4bit", "load_in_8bit", "bf16", "fp16", "device_map",
    "use_liger_kernel", "packing", "max_source_length", "max_target_length", "low_cpu_mem_usage",
    "bnb_4bit_compute_dtype", "bnb_4bit_quant_type", "gradient_checkpointing", "optim", "resume_from_checkpoint",
    "use_peft", "use_lora", "precision", "mixed_precision",
)

# transformers' TrainingArguments, TRL's SFTConfig and PEFT's LoraConfig defaults, where the user set nothing.
HF_DEFAULTS = {
    "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "gradient_checkpointing": False,
    "optim": "adamw_torch", "r": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "max_length": 1024,
    "attn_implementation": "sdpa",
}

KNOWN_KEYS = frozenset(ALIASES) | frozenset(ALIASES.values()) | frozenset(HF_DEFAULTS) | frozenset(_EXTRA_KEYS)
"""Every setting name the doctor reads from posted configs and command lines."""


class Depends(str):
    """A setting the script sets from an expression whose value depends on the machine (`not is_bfloat16_supported()`):
    set, value unknown. Its text is the expression."""


def normalize(raw: dict) -> dict:
    """Fold alias names onto the HF names and derive 'quant' from whichever way 4-/8-bit loading was asked for."""
    s: dict = {}
    for k, v in raw.items():
        k = str(k).replace("-", "_")
        s[ALIASES.get(k, k)] = v
    if "max_length" not in s and isinstance(s.get("max_source_length"), int):  # LLaMA-Factory's older split lengths
        s["max_length"] = s["max_source_length"] + int(s.get("max_target_length") or 0)
    if "quant" not in s:
        qtype = str(s.get("bnb_4bit_quant_type", "nf4")).lower()
        if s.get("load_in_4bit") is True or s.get("quantization_bit") == 4:
            s["quant"] = "fp4" if qtype == "fp4" else "nf4"
        elif s.get("load_in_8bit") is True or s.get("quantization_bit") == 8:
            s["quant"] = "int8"
    if s.get("flash_attention") is True or s.get("flash_attn") in ("fa2", "auto"):
        s.setdefault("attn_implementation", "flash_attention_2")
    return s


def _targets(value, notes: list) -> tuple[str, ...]:
    if isinstance(value, str):
        if value.lower() in ("all-linear", "all"):
            return ("all-linear",)
        value = [v.strip() for v in value.split(",")]
    known = set(ALL_LINEARS) | set(LORA_TARGET_ALIASES)
    out = tuple(t for t in value if t in known)
    dropped = [t for t in value if t not in known]
    if dropped:
        notes.append(f"LoRA targets {dropped} are not decoder linears the estimator knows; left out of the estimate")
    return out or ATTN_LINEARS


def setup_from_settings(raw: dict) -> tuple[Setup, list[str]]:
    """A Setup for the hf stack (Trainer/SFTTrainer + PEFT) from HF-named settings, and the defaults it assumed."""
    s = normalize(raw)
    notes: list[str] = []

    def get(key):
        v = s.get(key)
        if v is not None and not isinstance(v, Depends):
            if isinstance(HF_DEFAULTS[key], (int, bool)) and not isinstance(HF_DEFAULTS[key], bool):
                try:
                    return int(v)
                except (TypeError, ValueError):
                    notes.append(f"{key}={v!r} is not a number the doctor can read: sized with {HF_DEFAULTS[key]!r}")
                    return HF_DEFAULTS[key]
            return v
        notes.append(f"{key} not set: library default {HF_DEFAULTS[key]!r}" if v is None else
                     f"{key} set from `{v}`: value unknown here, sized with the default {HF_DEFAULTS[key]!r}")
        return HF_DEFAULTS[key]

    quant = s.get("quant", "none")
    mixed = str(s.get("mixed_precision") or s.get("precision") or "").lower()
    if s.get("bf16") is True or mixed.startswith("bf16"):
        dtype = "bf16"
    elif s.get("fp16") is True or mixed.startswith("fp16"):
        dtype = "fp16"
    elif isinstance(s.get("bf16"), Depends) or isinstance(s.get("fp16"), Depends):
        dtype = "bf16"
        expr = s.get("bf16") if isinstance(s.get("bf16"), Depends) else s.get("fp16")
        notes.append(f"bf16/fp16 set from `{expr}`: 16-bit either way (which one depends on the GPU), sized as bf16")
    else:
        dtype = O.dtype_from_hf(str(s.get("bnb_4bit_compute_dtype", s.get("torch_dtype", s.get("dtype")))))
        if dtype is None:
            dtype = "fp32"
            notes.append("no bf16/fp16 flag and no compute dtype: activations assumed fp32")
    attn = str(get("attn_implementation"))
    attn = "flash" if "flash" in attn else attn if attn in ("eager", "sdpa") else "sdpa"
    optim = str(get("optim")).lower()
    if O.optimizer_from_hf(optim) is None:
        notes.append(f"optim {optim!r} has no estimate of its own: sized as torch AdamW")
    ckpt = s.get("gradient_checkpointing")
    if ckpt is None:
        ckpt = get("gradient_checkpointing")
    setup = Setup(
        quant=quant, double_quant=bool(s.get("bnb_4bit_use_double_quant", s.get("double_quant", False))),
        compute_dtype=dtype, lora_r=int(get("r")), lora_targets=_targets(get("target_modules"), notes),
        lora_dropout=float(get("lora_dropout")), batch_size=int(get("per_device_train_batch_size")),
        seq_len=int(get("max_length")), packing=bool(s.get("packing", False)),
        grad_checkpointing="on" if ckpt else "off", optimizer=O.optimizer_from_hf(optim) or "adamw", attn_impl=attn,
        loss_impl="fused" if s.get("use_liger_kernel") else "standard", stack="hf",
    )
    return setup, notes
