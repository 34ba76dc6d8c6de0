"""The training configuration: typed dataclasses, each field documented once.

The same help text serves `qlorafit train --help`, the YAML written by `plan` and `--print-config`, and the generated
reference (`reference_markdown`). Loading collects every problem (unknown keys with the closest valid name, wrong
types, bad choices) and raises once. Plain Python, no torch.
"""

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from qlorafit.core import options as O
from qlorafit.errors import UserError


# What changing a field does to a run continued with --resume (read by qlorafit.core.resume):
#   safe     the samples, the shapes and the saved state stay valid: allowed, and listed (lr, eval, logging, saving)
#   samples  which samples each step trains changes (data, micro-batch x accumulation, seed): refused unless
#            --allow-changes, which re-draws the rest of the epoch under the new setting
#   state    the saved state no longer means what it did (optimizer, lora.alpha, quantization): refused unless
#            --allow-changes (a new optimizer then starts from fresh state)
#   shape    the checkpoint cannot load into the new model (model, lora.r, targets): always refused
RESUME_CLASSES = ("safe", "samples", "state", "shape")


def opt(default, help: str, choices: tuple | None = None, *, resume: str):
    """A config field with its documentation, allowed values and resume class (RESUME_CLASSES) attached."""
    assert resume in RESUME_CLASSES, resume
    meta = {"help": help, "choices": choices, "resume": resume}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    name_or_path: str = opt("qlorafit/tiny-llama", "Model to fine-tune: a Hub id (e.g. Qwen/Qwen3-8B: its safetensors, "
                            "config and tokenizer are downloaded once into the HF cache; HF_HUB_OFFLINE, HF_TOKEN, "
                            "HF_HOME and HF_ENDPOINT are respected), a catalogue name (qwen3-8b), a local directory, "
                            "or 'qlorafit/tiny-llama' (the embedded demo model, built offline).", resume="shape")
    quant: str = opt("nf4", "Base weight format. nf4/fp4: 4-bit bitsandbytes (QLoRA); int8: LLM.int8; none: 16-bit "
                     "(4x the weight memory of nf4).", O.names(O.QUANTS), resume="state")
    double_quant: bool = opt(True, "Quantize the quantization constants too: saves ~0.37 bit per weight "
                             "(~0.3 GiB on an 8B model) at no measurable speed cost.", resume="state")
    compute_dtype: str = opt("auto", "Dtype of activations and dequantized weights. auto: bf16 where the GPU supports "
                             "it, else fp16 (with a warning: fp16 overflows more easily).",
                             ("auto",) + O.names(O.DTYPES), resume="safe")
    attn_impl: str = opt("sdpa", "Attention kernel. sdpa/flash keep memory linear in sequence length; eager "
                         "materializes heads x seq x seq scores per layer.", O.names(O.ATTENTIONS), resume="safe")
    device_map: str = opt("auto", "Where the model goes. auto: the whole model on one GPU (the current one; under "
                          "torchrun, each rank's own), except what offload_embedding / offload_lm_head keep in host "
                          "RAM; with max_memory set, accelerate fills that GPU, then host RAM. Or a device like "
                          "'cuda:0' or 'cpu'. Several GPUs: launch one process per GPU (--nproc N) with "
                          "dist.strategy; a layer split across GPUs is refused.", resume="safe")
    max_memory: dict = opt({}, "Per-device caps for device_map=auto, e.g. {0: '20GiB', cpu: '64GiB'}: accelerate "
                           "fills GPU 0, then host RAM. At most one GPU (several: use --nproc N with "
                           "dist.strategy=fsdp).", resume="safe")
    trust_remote_code: bool = opt(False, "Run the model repo's own Python code. Off unless you trust the repo.", resume="safe")
    upcast_embeddings: bool = opt(False, "Upcast embedding and lm_head to fp32 like prepare_model_for_kbit_training "
                                  "(costs vocab x hidden x 4 bytes more, ~2 GiB on Llama-3-8B). Rarely needed.", resume="safe")
    offload_embedding: bool = opt(True, "Keep the input embedding in host RAM and look tokens up there: saves "
                                  "vocab x hidden x 2 bytes of GPU memory (~1 GiB on Llama-3-8B) for a host lookup and one (B, T, hidden) copy "
                                  "per forward (no measurable slowdown on the H200: benchmarks/README.md). No effect "
                                  "when the embedding is tied to lm_head.", resume="safe")
    offload_lm_head: bool = opt(False, "Keep lm_head's weight in host RAM and stream it through the GPU in 64 MiB "
                                "vocabulary slices inside the loss: saves vocab x hidden x 2 bytes of GPU memory (~1 "
                                "GiB on Llama-3-8B) for one host->GPU copy of the whole head per forward (vocab x "
                                "hidden x 2 bytes over PCIe, ~50 ms at 20 GB/s, overlapped with the loss's matmuls). "
                                "The loss is then always the streamed one (train.loss_impl standard/fused do not "
                                "apply). Tied embeddings: the lookup moves to host RAM too, so the shared matrix "
                                "leaves the GPU. lm_head must stay frozen (not in lora.targets or "
                                "lora.modules_to_save).", resume="safe")


@dataclass
class LoraConfig:
    r: int = opt(16, "LoRA rank. Memory and trainable parameters grow linearly with it.", resume="shape")
    alpha: int = opt(32, "LoRA scaling numerator (the update is scaled by alpha / r).", resume="state")
    # 0 by default, as PEFT's LoraConfig and Unsloth have it: with dropout each adapted module keeps a dropped copy
    # of its input for backward, and train.cuda_graphs cannot capture the recompute's masks (1.8x at 2 x 4 x 512)
    dropout: float = opt(0.0, "LoRA dropout (0.05-0.1 is the QLoRA paper's regularizer for small datasets). Above 0 "
                         "each adapted module keeps a dropped copy of its input for backward (3 bytes per input "
                         "element), and train.cuda_graphs turns off.", resume="safe")
    targets: list = opt(["q_proj", "k_proj", "v_proj", "o_proj"], "Modules that get adapters: a list of names, or "
                        "['all-linear'] (better quality, ~2.5x the LoRA memory and more activation memory).", resume="shape")
    modules_to_save: list = opt([], "Modules trained in full and saved with the adapter (e.g. ['lm_head']); costly.", resume="shape")
    dtype: str = opt("fp32", "Dtype of the LoRA weights. fp32 is PEFT's default and the stable choice.", ("fp32", "bf16"), resume="state")
    resume_adapter: str = opt("", "Path of an existing PEFT adapter directory to continue training from.", resume="safe")


@dataclass
class DataConfig:
    path: str = opt("qlorafit/demo", "Training data: a .jsonl/.json/.csv/.parquet file, a dataset directory "
                    "(save_to_disk, or a folder of data files), a Hub dataset id (with data.split), or "
                    "'qlorafit/demo' (the embedded demo set).", resume="samples")
    format: str = opt("auto", "Record format. auto detects it per record from the fields: messages (OpenAI chat, "
                      "with tool calls and tool results); sharegpt (conversations of from/value); prompt_completion "
                      "(text, or lists of messages); alpaca (instruction/input/output: chat template when the model "
                      "has one); text.", ("auto", "text", "alpaca", "messages", "sharegpt", "prompt_completion"),
                      resume="samples")
    text_field: str = opt("text", "Field holding the text, for format text.", resume="samples")
    columns: dict = opt({}, "Read other column names as qlorafit's: {messages: dialog, prompt: question, completion: "
                        "answer}. Keys: messages, conversations, prompt, completion, instruction, input, output, "
                        "system, tools, text.", resume="samples")
    chat_template: str = opt("", "A chat template (a .jinja file or the template text) to use instead of the "
                             "tokenizer's.", resume="samples")
    chat_template_kwargs: dict = opt({}, "Extra variables for the chat template, e.g. {enable_thinking: false} "
                                     "(Qwen3) or {reasoning_effort: low} (gpt-oss).", resume="samples")
    completion_only: bool = opt(False, "Train only on the completion / assistant turns (each with its end-of-turn "
                                "token); prompt, system, user and tool tokens get no loss.", resume="samples")
    max_seq_length: int = opt(512, "Samples are truncated to this many tokens (the count cut is reported). Activation "
                              "memory grows linearly with it.", resume="samples")
    packing: bool = opt(False, "Pack several samples into each row (no cross-sample attention). Saves padding compute, "
                        "not memory: rows are always full.", resume="samples")
    group_by_length: bool = opt(True, "Batch samples of similar length together: less padding, less memory per token.", resume="samples")
    eval_split: float = opt(0.0, "Fraction of the data held out for evaluation (0 = none).", resume="samples")
    eval_path: str = opt("", "A separate evaluation file (overrides eval_split).", resume="samples")
    split: str = opt("train", "Split to use when path names a datasets dataset.", resume="samples")


@dataclass
class TrainConfig:
    micro_batch_size: int = opt(1, "Sequences per forward pass. Activation memory grows linearly with it.", resume="samples")
    grad_accum: int = opt(8, "Micro-batches per optimizer step. The effective batch is micro_batch_size x grad_accum; "
                          "raising it costs no memory.", resume="samples")
    epochs: float = opt(1.0, "Passes over the data (ignored when max_steps > 0).", resume="safe")
    max_steps: int = opt(0, "Stop after this many optimizer steps (0 = run the epochs).", resume="safe")
    lr: float = opt(2e-4, "Peak learning rate.", resume="safe")
    schedule: str = opt("cosine", "Learning-rate schedule after warmup.", ("constant", "linear", "cosine"), resume="safe")
    warmup_steps: int = opt(10, "Optimizer steps of linear warmup from 0 (transformers 5 dropped warmup_ratio).", resume="safe")
    weight_decay: float = opt(0.0, "AdamW weight decay.", resume="safe")
    max_grad_norm: float = opt(1.0, "Clip the global gradient norm to this (0 = no clipping).", resume="safe")
    optimizer: str = opt("adamw", O.choices_help(O.OPTIMIZERS) + ".", O.names(O.OPTIMIZERS), resume="state")
    grad_checkpointing: str = opt(O.AUTO_CHECKPOINTING, O.choices_help(O.CHECKPOINTING) + f"; {O.AUTO_CHECKPOINTING}: "
                                  f"offload for micro-batches of {O.GPU_BOUND_TOKENS:,}+ tokens (micro_batch_size x "
                                  f"max_seq_length; there the copies hide behind the GPU's work), on below (and "
                                  f"under fsdp). The run's config.yaml records what it resolved to.",
                                  O.names(O.CHECKPOINTING) + (O.AUTO_CHECKPOINTING,), resume="safe")
    compile: bool = opt(True, "torch.compile each decoder layer (CUDA with Triton only; one graph shared by all "
                        "layers, ~15-30 s on the first step and on the first new shape). Fuses the norm, RoPE, SwiGLU "
                        "and dropout kernels and cuts Python launch overhead: 1.46x (2 x 4 x 512) and 1.8x (1 x 2,048) "
                        "tokens/s on Llama-3-8B (benchmarks/README.md, fourth session). Memory unchanged. Ignored on "
                        "CPU and with train.mlp_tile_tokens; false for very short runs.", resume="safe")
    cuda_graphs: str = opt("auto", "Capture each micro-batch's forward and backward as one CUDA graph and replay "
                           "it: the host out of the step. auto: for micro-batches below "
                           f"{O.GPU_BOUND_TOKENS:,} tokens (micro_batch_size x max_seq_length), which are "
                           "host-bound; on Llama-3-8B 2 x 4 x 512 ran 2.4x and 1 x 2,048 1.4x the compiled layers, "
                           "for ~0.3 GiB of graph memory (benchmarks/README.md, eighth and ninth sessions). Lengths are padded "
                           "to multiples of 256 and the layers are not compiled; each new graph is checked against "
                           "the eager pass first. Needs a single CUDA GPU, bf16, lora.dropout 0, train.loss_impl "
                           "chunked, checkpointing on or off (not offload), no packing; where the setup does not "
                           "allow it, auto is off (and on says why). config.yaml records what ran (true/false work "
                           "as on/off).", O.GRAPHS_CHOICES, resume="safe")
    mlp_tile_tokens: int = opt(0, "0: off. N: run each layer's MLP on N-position slices of the sequence, each "
                               "recomputed in backward, so only one slice's MLP intermediates (~6 x intermediate bytes "
                               "per token) are alive at a time. For long contexts; costs one more MLP forward.", resume="safe")
    loss_impl: str = opt("chunked", O.choices_help(O.LOSSES) + ".", O.names(O.LOSSES), resume="safe")
    seed: int = opt(42, "Seed for data order, LoRA init and dropout.", resume="samples")
    deterministic: bool = opt(False, "Ask torch for deterministic kernels (slower).", resume="safe")
    eval_every: int = opt(0, "Evaluate every N optimizer steps (0 = only at the end, if there is eval data).", resume="safe")
    early_stopping_patience: int = opt(0, "Stop when the eval loss has not improved for this many evaluations in a "
                                       "row (0 = never). final/ holds the weights at the stop.", resume="safe")
    sample_prompts: list = opt([], "Prompts the model answers at each evaluation (greedy, through the chat template, "
                               "batch 1: a KV cache far smaller than a training step); written to samples.jsonl and "
                               "shown by `qlorafit report`.", resume="safe")
    sample_max_new_tokens: int = opt(64, "Most tokens generated per sample prompt.", resume="safe")
    save_every: int = opt(0, "Save a checkpoint every N optimizer steps (0 = by time only, see save_every_minutes).", resume="safe")
    save_every_minutes: float = opt(20.0, "Also save a checkpoint when this many minutes of training have passed since "
                                    "the last one (0 = off), so a crash or a kill loses at most that much work. A "
                                    "checkpoint is the adapter, optimizer state and RNG: seconds to write.", resume="safe")
    keep_checkpoints: int = opt(3, "Keep only the newest N step checkpoints (0 = keep all); final/ is always kept.", resume="safe")
    log_every: int = opt(1, "Write a metrics.jsonl line every N optimizer steps.", resume="safe")
    tensorboard: bool = opt(False, "Also write TensorBoard event files (needs the tensorboard package).", resume="safe")
    report_to: list = opt([], "Experiment trackers that receive the same metrics and memory events as metrics.jsonl: "
                          "any of tensorboard, wandb, mlflow, trackio (each an optional extra, e.g. pip install "
                          "'qlorafit[wandb]'; configured by its own environment: WANDB_PROJECT, MLFLOW_TRACKING_URI).",
                          resume="safe")
    max_bad_steps: int = opt(3, "Stop after this many consecutive steps with a NaN/inf loss (each is skipped).", resume="safe")
    push_to_hub: str = opt("", "After training, upload final/ to this Hub repo (owner/name) with a model card of the "
                           "base model, data, config and measured memory and speed; '' = don't. Same as `qlorafit "
                           "push RUN --repo ID` (needs `hf auth login` or HF_TOKEN).", resume="safe")


@dataclass
class GuardConfig:
    enabled: bool = opt(True, "Recover from CUDA OOM in place: re-split the step into smaller micro-batches, keeping "
                        "the effective batch and the gradients already computed.", resume="safe")
    on_oom: str = opt("adapt", "When one sample cannot fit even alone with offloaded checkpointing: adapt (truncate "
                      "it), skip (log its id and go on) or fail.", ("adapt", "skip", "fail"), resume="safe")
    max_retries: int = opt(8, "Recoveries allowed within one optimizer step before giving up.", resume="safe")
    grow_back_after: int = opt(0, "After this many steady steps, try the original micro-batch again (0 = never).", resume="safe")
    expandable_segments: bool = opt(True, "Set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (less fragmentation).", resume="safe")


@dataclass
class DistConfig:
    strategy: str = opt("auto", "Under torchrun / accelerate launch / --nproc: ddp (each GPU holds the whole 4-bit "
                        "model; fastest when it fits one GPU), fsdp (FSDP2: the 4-bit weights, LoRA weights, "
                        "gradients and optimizer state sharded over the GPUs, each layer all-gathered for its "
                        "forward and backward; for models that do not fit one GPU), or auto (ddp if the estimate "
                        "fits one GPU, else fsdp). Ignored by a single-process run.", ("auto", "ddp", "fsdp"),
                        resume="safe")
    cpu_offload: bool = opt(False, "fsdp only: keep the sharded parameters (and so the optimizer step) in host RAM, "
                            "each layer copied to the GPU for its forward and backward: the GPU holds about one "
                            "layer of weights instead of 1/N of the model, for 2 host<->GPU copies of every weight "
                            "per step.", resume="safe")


@dataclass
class Config:
    output_dir: str = opt("runs/qlorafit", "Run directory: checkpoints, metrics.jsonl, events, the final adapter.", resume="safe")
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    dist: DistConfig = field(default_factory=DistConfig)


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "output_dir"}


def _coerce(value, ftype, where: str, problems: list, choices=None):
    """Check (and gently convert) one value to the field's type; append a problem naming `where` if it won't go."""
    if isinstance(ftype, str):
        ftype = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}[ftype]
    ok = True
    if ftype is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            value = value.lower() in ("true", "yes", "1", "on")
        ok = isinstance(value, bool)
    elif ftype in (int, float):
        if isinstance(value, str):
            try:
                value = ftype(value)
            except ValueError:
                ok = False
        ok = ok and isinstance(value, (int, ftype)) and not isinstance(value, bool)
        value = ftype(value) if ok else value
    elif ftype is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        ok = isinstance(value, list)
    elif ftype is dict:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value) or {}
            except yaml.YAMLError:
                ok = False
        ok = ok and isinstance(value, dict)
    elif ftype is str:
        if isinstance(value, bool) and choices and {"on", "off"} <= set(choices):  # true/false for an on/off choice
            value = "on" if value else "off"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        ok = isinstance(value, str)
    if not ok:
        problems.append(f"{where}: expected {ftype.__name__}, got {value!r}")
        return None
    if choices and value not in choices:
        problems.append(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return None
    return value


# Names people bring from TrainingArguments / LoraConfig / other trainers, and what they are called here.
KNOWN_ALIASES = {
    "rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "targets",
    "per_device_train_batch_size": "micro_batch_size", "batch_size": "micro_batch_size",
    "gradient_accumulation_steps": "grad_accum", "learning_rate": "lr", "max_seq_len": "max_seq_length",
    "max_length": "max_seq_length", "optim": "optimizer", "gradient_checkpointing": "grad_checkpointing",
    "lr_scheduler_type": "schedule", "num_train_epochs": "epochs", "warmup_ratio": "warmup_steps",
    "dataset_text_field": "text_field", "model_name_or_path": "name_or_path", "model_name": "name_or_path",
}


def _suggest(key: str, valid: list[str]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    if KNOWN_ALIASES.get(leaf) in valid or (key.rsplit(".", 1)[0] + "." + KNOWN_ALIASES.get(leaf, "")) in valid:
        target = KNOWN_ALIASES[leaf]
        return f" (did you mean '{target if target in valid else key.rsplit('.', 1)[0] + '.' + target}'?)"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


def keyed_fields() -> dict[str, dataclasses.Field]:
    """{'section.key' (or a top-level key): its field, with help, choices and resume class}, in declaration order."""
    out = {}
    for f in dataclasses.fields(Config):
        sec = SECTIONS.get(f.name)
        out.update({f"{f.name}.{sf.name}": sf for sf in dataclasses.fields(sec)} if sec else {f.name: f})
    return out


def from_dict(raw: dict, source: str = "config") -> Config:
    """Build a Config from a nested dict; every problem is collected and raised once, naming `source` and the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections (model:, lora:, data:, train:, guard:, dist:)")
    problems: list[str] = []
    cfg = Config()
    sections = SECTIONS
    top_fields = {f.name: f for f in dataclasses.fields(Config) if f.name not in sections}
    for key, value in raw.items():
        if key in sections:
            if value is None:
                continue
            if not isinstance(value, dict):
                problems.append(f"{source}: '{key}' must be a mapping")
                continue
            obj = getattr(cfg, key)
            fields = {f.name: f for f in dataclasses.fields(obj)}
            for k, v in value.items():
                if k not in fields:
                    problems.append(f"{source}: unknown key '{key}.{k}'{_suggest(k, list(fields))}")
                    continue
                f = fields[k]
                v2 = _coerce(v, f.type, f"{source}: {key}.{k}", problems, f.metadata.get("choices"))
                if v2 is not None:
                    setattr(obj, k, v2)
        elif key in top_fields:
            f = top_fields[key]
            v2 = _coerce(value, f.type, f"{source}: {key}", problems)
            if v2 is not None:
                setattr(cfg, key, v2)
        else:
            problems.append(f"{source}: unknown key '{key}'{_suggest(key, list(sections) + list(top_fields))}")
    problems += [f"{source}: {p}" for p in check(cfg)]
    if problems:
        raise UserError("\n  ".join(["invalid configuration:"] + problems))
    resolve(cfg)
    return cfg


def resolve(cfg: Config) -> Config:
    """Settings that depend on others, made concrete in place: train.grad_checkpointing auto."""
    t = cfg.train
    t.grad_checkpointing = O.resolve_checkpointing(t.grad_checkpointing, t.micro_batch_size * cfg.data.max_seq_length,
                                                   to_host_ok=cfg.dist.strategy != "fsdp")
    return cfg


def check(cfg: Config) -> list[str]:
    """Value checks that cross fields or bounds; returns problems, raises nothing."""
    p = [f"{where}: must be positive, got {v}" for where, v in (
        ("lora.r", cfg.lora.r), ("data.max_seq_length", cfg.data.max_seq_length),
        ("train.micro_batch_size", cfg.train.micro_batch_size), ("train.grad_accum", cfg.train.grad_accum))
        if v is not None and v <= 0]
    trackers = ("tensorboard", "wandb", "mlflow", "trackio")
    p += [f"train.report_to: unknown tracker {name!r}; choose from {', '.join(trackers)}"
          for name in cfg.train.report_to if name not in trackers]
    p += [msg for bad, msg in (
        (not all(isinstance(x, str) and x.strip() for x in cfg.train.sample_prompts),
         "train.sample_prompts: every prompt must be non-empty text"),
        (not 0 <= cfg.lora.dropout < 1, f"lora.dropout: must be in [0, 1), got {cfg.lora.dropout}"),
        (not 0 <= cfg.data.eval_split < 1, f"data.eval_split: must be in [0, 1), got {cfg.data.eval_split}"),
        (not cfg.train.lr > 0, f"train.lr: must be positive, got {cfg.train.lr}")) if bad]  # not > 0: NaN too
    gpus = [k for k in cfg.model.max_memory if str(k).lower() not in ("cpu", "disk", "mps")]
    if len(gpus) > 1:
        p.append(f"model.max_memory: names {len(gpus)} GPUs ({', '.join(map(str, gpus))}); a layer split over GPUs "
                 f"runs one GPU at a time and the estimate does not model it. Train on all of them with "
                 f"`qlorafit train CONFIG --nproc {len(gpus)}` (dist.strategy=fsdp shards a model that does not fit "
                 f"one GPU), and keep at most one GPU in max_memory")
    t = cfg.train
    for where, v, low in (("train.max_steps", t.max_steps, 0), ("train.warmup_steps", t.warmup_steps, 0),
                          ("train.log_every", t.log_every, 1), ("train.save_every", t.save_every, 0),
                          ("train.save_every_minutes", t.save_every_minutes, 0), ("train.eval_every", t.eval_every, 0),
                          ("train.keep_checkpoints", t.keep_checkpoints, 0), ("train.max_bad_steps", t.max_bad_steps, 1),
                          ("train.weight_decay", t.weight_decay, 0), ("train.max_grad_norm", t.max_grad_norm, 0),
                          ("train.mlp_tile_tokens", t.mlp_tile_tokens, 0), ("guard.max_retries", cfg.guard.max_retries, 0),
                          ("guard.grow_back_after", cfg.guard.grow_back_after, 0)):
        if v is not None and v < low:
            p.append(f"{where}: must be {'at least 1' if low else 'zero or more'}, got {v}")
    if t.max_steps == 0 and t.epochs is not None and not t.epochs > 0:
        p.append(f"train.epochs: must be above 0 when train.max_steps is 0, got {t.epochs}")
    if cfg.model.offload_lm_head:
        for where, names in (("lora.targets", cfg.lora.targets), ("lora.modules_to_save", cfg.lora.modules_to_save)):
            if "lm_head" in names:
                p.append(f"{where}: names lm_head, which model.offload_lm_head keeps frozen in host RAM; "
                         f"drop one of the two")
    push = cfg.train.push_to_hub
    if push and (push.count("/") != 1 or push.startswith(("/", ".", "~")) or push.endswith("/") or " " in push):
        p.append(f"train.push_to_hub: must be a Hub repo as owner/name, got {push!r}")
    return p


def parse_overrides(pairs: list[str]) -> dict:
    """['train.lr=1e-4', 'lora.r=8'] -> {'train': {'lr': '1e-4'}, 'lora': {'r': '8'}}; values are typed later."""
    out: dict = {}
    valid = list(keyed_fields())
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--set {pair!r}: write it as section.key=value, e.g. train.lr=1e-4")
        key, value = pair.split("=", 1)
        key = key.strip()
        if key not in valid:
            raise UserError(f"--set: unknown key '{key}'{_suggest(key, valid)}")
        try:
            parsed = yaml.safe_load(value) if value.strip().startswith(("[", "{")) else value
        except yaml.YAMLError as e:
            raise UserError(f"--set {key}: {value!r} is not a valid list or mapping ({getattr(e, 'problem', e)}); "
                            f"write a list as [a, b] or a,b") from None
        if "." in key:
            sec, k = key.split(".", 1)
            out.setdefault(sec, {})[k] = parsed
        else:
            out[key] = parsed
    return out


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), (dict, type(None))) else v
    return out


def load(path: str | None = None, overrides: dict | None = None) -> Config:
    """Read a YAML file (optional), apply overrides (a nested dict), validate everything at once."""
    raw: dict = {}
    source = "config"
    if path:
        p = Path(path)
        source = str(p)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"{p}: no such config file") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UserError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return from_dict(merge(raw, overrides or {}), source)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config, header: str = "") -> str:
    """The configuration as YAML, each key preceded by its documentation as a comment."""
    lines = [f"# {line}" for line in header.splitlines()]
    for f in dataclasses.fields(Config):
        keys = [(f, cfg, "")]
        if f.name in SECTIONS:
            lines.append(f"{f.name}:")
            keys = [(sf, getattr(cfg, f.name), "  ") for sf in dataclasses.fields(SECTIONS[f.name])]
        for k, obj, pad in keys:
            dumped = yaml.safe_dump({k.name: getattr(obj, k.name)}, default_flow_style=True, width=10**6).strip()
            lines += [f"{pad}# {k.metadata.get('help', '')}", pad + (dumped[1:-1] if dumped.startswith("{") else dumped)]
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """Every key with its type, default and documentation: the generated reference (docs/config.md)."""
    out = ["# qlorafit configuration reference", "", "Generated from `qlorafit/core/config.py`; do not edit by hand.", ""]
    for f in dataclasses.fields(Config):
        if f.name in SECTIONS:
            out += [f"## `{f.name}:`", "", "| key | type | default | what it does |", "|---|---|---|---|"]
            for sf in dataclasses.fields(SECTIONS[f.name]):
                default = sf.default if sf.default is not dataclasses.MISSING else sf.default_factory()
                choices = sf.metadata.get("choices")
                doc = sf.metadata.get("help", "") + (f" One of: {', '.join(choices)}." if choices else "")
                tname = sf.type if isinstance(sf.type, str) else sf.type.__name__
                out.append(f"| `{f.name}.{sf.name}` | {tname} | `{default!r}` | {doc} |")
            out.append("")
        else:
            out += [f"## `{f.name}`", "", f.metadata.get("help", ""), ""]
    return "\n".join(out)


def help_for(key: str) -> str:
    """The documentation of 'section.key' (for CLI help)."""
    f = keyed_fields().get(key)
    return f.metadata.get("help", "") if f else ""
