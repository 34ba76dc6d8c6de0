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
    "model_parallel": "tensor_parallel_size", "model_parallel_size": "tensor_parallel_size",
    "tensor_model_parallel_size": "tensor_parallel_size", "tp_size": "tensor_parallel_size",
    "nproc_per_node": "world_size", "num_processes": "world_size", "num_gpus": "world_size",
    "preprocessing_num_workers": "map_workers", "dataset_num_proc": "map_workers", "num_proc": "map_workers",
    "evaluation_strategy": "eval_strategy", "enable_gradit_checkpoing": "gradient_checkpointing",
}
TRAINER_NAMES = {  # more trainers' names, by trainer (a name some trainer gives a setting -> the HF name)
    "LLaMA-Factory": {"vllm_gpu_util": "vllm_gpu_memory_utilization", "vllm_maxlen": "vllm_max_model_len",
                      "enable_liger_kernel": "use_liger_kernel", "image_max_pixels": "max_pixels"},
    "axolotl": {"val_set_size": "val_size", "eval_max_new_tokens": "max_new_tokens",
                "liger_fused_linear_cross_entropy": "use_liger_kernel", "cut_cross_entropy": "use_liger_kernel"},
    "Unsloth": {"use_gradient_checkpointing": "gradient_checkpointing"},
    "OpenRLHF": {"adam_offload": "offload_optimizer", "prompt_max_len": "max_prompt_length",
                 "generate_max_len": "max_new_tokens"},
    "verl / EasyR1": {"ppo_micro_batch_size_per_gpu": "per_device_train_batch_size", "micro_batch_size_per_device_for"
                      "_update": "per_device_train_batch_size", "max_response_length": "max_completion_length",
                      "enable_gradient_checkpointing": "gradient_checkpointing", "param_offload": "offload_param",
                      "optimizer_offload": "offload_optimizer", "n_gpus_per_node": "world_size"},
    "ms-swift": {"quant_bits": "quantization_bit", "train_type": "finetuning_type"},
    "Firefly": {"train_mode": "finetuning_type"},  # full | lora | qlora
    "torchtune": {"enable_activation_checkpointing": "gradient_checkpointing"},
    "litgpt / mlx-lm": {"devices": "world_size", "grad_checkpoint": "gradient_checkpointing"},
    "llm-foundry / Composer": {"device_train_microbatch_size": "per_device_train_batch_size",
                               "device_eval_batch_size": "per_device_eval_batch_size",
                               "activation_checkpointing": "gradient_checkpointing"},
    "accelerate": {"fsdp_offload_params": "offload_param"},
    "ChatGLM / FastChat": {"max_input_length": "max_source_length", "max_output_length": "max_target_length",
                           "q_lora": "load_in_4bit"},
}
"""Names other trainers give the settings the rules read. A dotted key (verl's actor_rollout_ref.rollout.
gpu_memory_utilization, a DeepSpeed JSON path) is read by its last part. Read specially in normalize: LLaMA-Factory's
disable_gradient_checkpointing and pure_bf16, axolotl's adapter: qlora and lora_target_linear, 'auto' precision."""
for _names in TRAINER_NAMES.values():
    ALIASES.update(_names)
_EXTRA_KEYS = (  # names read as they are (not estimator inputs, but evidence for the rules)
    "per_device_eval_batch_size", "eval_accumulation_steps", "prediction_loss_only", "predict_with_generate",
    "do_predict", "do_eval", "eval_strategy", "eval_steps", "val_size", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization",
    "vllm_max_model_len", "num_generations", "max_completion_length", "max_prompt_length", "max_new_tokens",
    "ds3_gather_for_generation", "deepspeed", "zero_stage", "offload_param", "offload_optimizer", "fsdp",
    "zero3_init_flag", "world_size", "distributed_type", "finetuning_type", "map_workers", "torch_dtype", "dtype",
    "flash_attn", "use_unsloth", "quantization_bit", "load_in_4bit", "load_in_8bit", "bf16", "fp16", "device_map",
    "use_liger_kernel", "packing", "max_source_length", "max_target_length", "low_cpu_mem_usage",
    "bnb_4bit_compute_dtype", "bnb_4bit_quant_type", "gradient_checkpointing", "optim", "resume_from_checkpoint",
    "use_peft", "use_lora", "precision", "mixed_precision", "disable_gradient_checkpointing", "pure_bf16", "adapter",
    "lora_target_linear", "infer_backend", "fast_inference", "max_pixels", "tensor_parallel_size", "max_num_seqs",
    "quantize", "sdp_attention", "flash_attention",
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
        k = str(k).replace("-", "_").rsplit(".", 1)[-1]  # a dotted path by its last part
        k = k.lower() if k.isupper() else k  # a module of constants ('MODEL_PARALLEL = 4') names them in capitals
        s[ALIASES.get(k, k)] = v
    _trainer_specials(s, {str(k).replace("-", "_").rsplit(".", 1)[-1] for k in raw})
    if "max_length" not in s and isinstance(s.get("max_source_length"), int):  # LLaMA-Factory's older split lengths
        s["max_length"] = s["max_source_length"] + int(s.get("max_target_length") or 0)
    if "max_length" not in s and isinstance(s.get("max_prompt_length"), int) and isinstance(s.get("max_new_tokens"), int):
        s["max_length"] = s["max_prompt_length"] + s["max_new_tokens"]  # prompt + generated: what one sample holds
    if "quant" not in s:
        qtype = str(s.get("bnb_4bit_quant_type", "nf4")).lower()
        if s.get("load_in_4bit") is True or s.get("quantization_bit") == 4:
            s["quant"] = "fp4" if qtype == "fp4" else "nf4"
        elif s.get("load_in_8bit") is True or s.get("quantization_bit") == 8:
            s["quant"] = "int8"
    if s.get("flash_attention") is True or s.get("flash_attn") in (True, "fa2", "auto"):  # axolotl, OpenRLHF, LLaMA-Factory
        s.setdefault("attn_implementation", "flash_attention_2")
    elif s.get("flash_attn") == "disabled" or s.get("sdp_attention") is True or s.get("flash_attn") == "sdpa":
        s.setdefault("attn_implementation", "eager" if s.get("flash_attn") == "disabled" else "sdpa")
    return s


def _trainer_specials(s: dict, names: set) -> None:
    """Settings whose meaning is a trainer's own: a flag that says the opposite, a precision of 'auto', an adapter
    type that implies 4-bit loading, a 'target every linear' switch, and trainers' own defaults (LLaMA-Factory turns
    gradient checkpointing on, OpenRLHF loads with eager attention unless --flash_attn)."""
    for k in ("bf16", "fp16"):
        if isinstance(s.get(k), str) and s[k].lower() == "auto":  # axolotl, DeepSpeed: 16-bit when the GPU has it
            s[k] = Depends("auto")
    if s.get("pure_bf16") is True:  # LLaMA-Factory: the trainable weights in bf16 too
        s.setdefault("bf16", True)
    if str(s.get("adapter", "")).lower() == "qlora":  # axolotl
        s.setdefault("load_in_4bit", True)
    if str(s.get("finetuning_type", "")).lower() == "qlora":  # Firefly's train_mode: a LoRA on 4-bit weights
        s["finetuning_type"] = "lora"
        s.setdefault("load_in_4bit", True)
    if s.get("lora_target_linear") is True:  # axolotl
        s.setdefault("target_modules", "all-linear")
    if isinstance(s.get("gradient_checkpointing"), str) and s["gradient_checkpointing"].lower() in ("unsloth", "true"):
        s["gradient_checkpointing"] = True  # Unsloth's use_gradient_checkpointing="unsloth" is on
    if "disable_gradient_checkpointing" in s:  # LLaMA-Factory: on unless disabled
        s.setdefault("gradient_checkpointing", s["disable_gradient_checkpointing"] is not True)
    elif "gradient_checkpointing" not in s and names & {"cutoff_len", "finetuning_type", "quantization_bit"}:
        s["gradient_checkpointing"] = True  # LLaMA-Factory turns it on by default (transformers does not)
    # OpenRLHF's flags (ColossalAI's Coati also takes --pretrain, beside its --strategy: not OpenRLHF's defaults)
    openrlhf = bool(names & {"micro_train_batch_size", "micro_rollout_batch_size", "pretrain"}) and "strategy" not in names
    if openrlhf and "flash_attn" not in names and "attn_implementation" not in s:
        s["attn_implementation"] = "eager"  # OpenRLHF loads with eager attention unless --flash_attn
    if openrlhf and not names & {"lora_rank", "lora_r", "lora_alpha", "finetuning_type"}:
        s.setdefault("finetuning_type", "full")  # OpenRLHF trains every weight unless --lora_rank is given
    if str(s.get("quantize", "")).startswith("bnb.nf4"):  # litgpt
        s.setdefault("load_in_4bit", True)


def _targets(value, notes: list) -> tuple[str, ...]:
    if isinstance(value, str):
        if value.lower() in ("all-linear", "all"):
            return ("all-linear",)
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)):  # a flag read without its value, a number: nothing to go on
        notes.append(f"LoRA targets read as {value!r}, not a list of module names: q/k/v/o assumed")
        return ATTN_LINEARS
    value = [str(v) for v in value]
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
            kind = type(HF_DEFAULTS[key])
            if kind in (int, float):  # a number as posted: '0.05', or text that is none ('0.05.', '32 on a V100')
                try:
                    return kind(v)
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
        named = str(s.get("bnb_4bit_compute_dtype", s.get("torch_dtype", s.get("dtype"))))
        dtype = O.dtype_from_hf(named)
        if dtype is None and named.lower() == "auto":
            dtype = "bf16"  # the checkpoint's own dtype: bf16 for current models (transformers 5's default too)
            notes.append("dtype='auto': the checkpoint's own dtype, sized as bf16")
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
