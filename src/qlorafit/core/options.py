"""Every choice a run can make, declared once: optimizers, losses, checkpointing modes, weight formats, dtypes,
attention kernels and the trainer stack. Plain Python, no torch.

Each spec says what the estimator, the throughput model, the planner, the doctor, the config, the CLI and the runtime
(guard, loss, model loading, fsdp) need to know about the choice: its bytes, its speed terms, its names in other
trainers, where its builder lives and whether the planner may pick it. None of those modules tests a name string;
they read these properties (tests/test_knobs.py::test_no_module_tests_a_knob_name). A spec's help says what
it does, then its details in parentheses (config help shows both, the plan's one-line reasons the first part).

Adding an optimizer is one entry in OPTIMIZERS: e.g. bitsandbytes' 8-bit Lion would be
    Optimizer("lion_8bit", "bitsandbytes 8-bit Lion: one 8-bit moment (1 B/param)", moments=1, state_bits=8,
              paged=False, launches_per_tensor=1, hf_names=("lion_8bit",), builder="bitsandbytes.optim:Lion8bit",
              plannable=False)
The builder is a dotted path 'module:attribute' resolved by qlorafit.runtime only when a run starts, so this module
stays importable without torch. It is called as builder(params, lr=..., weight_decay=...). Not being `shardable`,
it is refused under fsdp with the reason. docs/config.md, generated from the config help, then lists it too.
"""

import importlib
from dataclasses import dataclass
from functools import partial


@dataclass(frozen=True)
class Optimizer:
    name: str
    help: str
    moments: int                  # state tensors per parameter (Adam: 2, Lion: 1)
    state_bits: int               # 32: fp32 states; 8: blockwise 8-bit with an fp32 absmax per STATE_BLOCK values
    paged: bool                   # states in CUDA managed memory: they can spill to host RAM under pressure
    launches_per_tensor: float    # kernels per parameter tensor per step (torch fused: one for all of them)
    hf_names: tuple[str, ...]     # TrainingArguments(optim=...) and other trainers' names for it
    builder: str                  # 'module:attribute', called as builder(params, lr=, weight_decay=)
    plannable: bool = True        # the planner may swap it in for the user's choice (same update rule: AdamW)
    shardable: bool = False       # steps FSDP's sharded (DTensor) parameters: torch's own, not bitsandbytes'

    STATE_BLOCK = 256

    @property
    def eight_bit(self) -> bool:
        return self.state_bits == 8

    def state_bytes(self, n_params: int) -> int:
        """Bytes of optimizer state for n_params trainable parameters.

        >>> optimizer("adamw_8bit").state_bytes(1024)   # 2 x 1 B/param + an fp32 absmax per 256 values per moment
        2080
        """
        per_param = self.moments * self.state_bits // 8
        absmax = self.moments * 4 * -(-n_params // self.STATE_BLOCK) if self.eight_bit else 0
        return n_params * per_param + absmax

    def moved_bytes_per_param(self) -> float:
        """Bytes read and written per parameter by the state update (absmax reads included for 8-bit)."""
        return 2 * self.moments * self.state_bits / 8 + (0.05 * self.moments if self.eight_bit else 0)


OPTIMIZERS = (
    Optimizer("adamw", "torch AdamW, fused on CUDA, fp32 states (8 B/param)", 2, 32, False, 1 / 64,
              ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw", "adam", "adamw_apex_fused"),
              "qlorafit.runtime.optim:torch_adamw", shardable=True),
    Optimizer("paged_adamw_32bit", "bitsandbytes, fp32 states (8 B/param) in managed memory that can spill to host "
              "RAM", 2, 32, True, 1, ("paged_adamw_32bit", "paged_adamw"), "bitsandbytes.optim:PagedAdamW32bit"),
    Optimizer("paged_adamw_8bit", "bitsandbytes, 8-bit states (2 B/param), paged", 2, 8, True, 1,
              ("paged_adamw_8bit", "paged_adam_8bit"), "bitsandbytes.optim:PagedAdamW8bit"),
    Optimizer("adamw_8bit", "bitsandbytes, 8-bit states (2 B/param), always on the GPU", 2, 8, False, 1,
              ("adamw_bnb_8bit", "adamw_8bit", "bnb_8bit", "adam8bit"), "bitsandbytes.optim:AdamW8bit"),
)


@dataclass(frozen=True)
class Loss:
    name: str
    help: str
    chunked: bool              # the full (tokens x vocab) logits never exist: they are made and freed chunk by chunk
    fwd_bytes_per_logit: int   # bytes alive per logit at the forward's high point (per chunk logit when chunked)
    bwd_bytes_per_logit: int   # the same in backward (chunked: 0, the gradient was made in forward)
    moved_bytes_per_logit: int  # bytes read + written per logit over forward and backward (throughput)
    kernels_per_chunk: int     # launches per chunk (throughput)
    builder: str | None = None  # a fused kernel, 'module:attribute' called as builder(ignore_index=, reduction=,
    #                             softcap=); without its package or a CUDA device the chunked loss runs instead
    plannable: bool = True

    @property
    def requires(self) -> str | None:
        """The package the builder needs ('liger_kernel'), None for qlorafit's own losses."""
        return self.builder.partition(".")[0] if self.builder else None


LOSSES = (
    # bf16 logits (2), their fp32 copy (4) and log_softmax's output (4); backward: the saved log_softmax, the fp32
    # gradient and its input gradient (3 x 4)
    Loss("standard", "full fp32 logits (~10-14 bytes x vocab per token)", False, 10, 12, 32, 0),
    Loss("chunked", "the same loss in chunks, the full logits never exist", True, 8, 0, 24, 12),
    Loss("fused", "liger-kernel's fused linear cross entropy (GPU only, falls back to chunked)", True, 8, 0, 10, 8,
         builder="liger_kernel.transformers:LigerFusedLinearCrossEntropyLoss"),
)
# the chunked loss sizes its chunks with a conservative 14 bytes per logit (the fp32 logits, their softmax-minus-onehot
# gradient and the bf16 matmul output, 4 + 4 + 2, plus slack for the next chunk's matmul output)
CHUNK_SIZING_BYTES_PER_LOGIT = 14


@dataclass(frozen=True)
class Checkpointing:
    name: str
    help: str
    recompute: bool     # backward rebuilds each layer from its saved input
    to_host: bool       # the saved layer inputs live in pinned host RAM (two on the GPU at a time in backward)
    note: str           # what the saved activations are, for the estimate's breakdown


CHECKPOINTING = (  # in the order the guard escalates after an OOM (qlorafit.runtime.guard.escalate)
    Checkpointing("off", "keep everything", False, False, "every layer's activations"),
    Checkpointing("on", "keep only each layer's input and recompute the rest in backward (~30% slower, far less "
                  "memory)", True, False, "each layer's input (checkpointing)"),
    Checkpointing("offload", "keep layer inputs in pinned host RAM", True, True, "layer inputs in host RAM"),
)

# A micro-batch of at least this many tokens keeps the GPU busy enough to hide the host's work behind it. There the
# default checkpointing ("auto") offloads the layer inputs to host RAM, because the copies cost nothing measurable:
# 1.00x in every round at 4 x 2,048 (8.90 -> 8.32 GiB) and 16,384 tokens (12.16 -> 11.02 GiB) on Llama-3-8B, where
# at 1 x 2,048 offloading ran 0.90-1.08x per round in the host-bound step (benchmarks/README.md, sixth session). The
# compiled layers also leave the MLP's frozen output projection out of the recompute from here
# (qlorafit.runtime.model.compile_layers).
GPU_BOUND_TOKENS = 8192
AUTO_CHECKPOINTING = "auto"


# train.cuda_graphs: each micro-batch's forward and backward captured as one CUDA graph and replayed
# (qlorafit.runtime.graphs). "auto", the default, captures micro-batches below GPU_BOUND_TOKENS tokens, which are
# host-bound, wherever the setup allows it: on Llama-3-8B (H200, session 8) 2 x 4 x 512 ran 7,642 tok/s against 4,155
# for the compiled default, and 1 x 2,048 7,847 against 6,848, for the graphs' pool (~0.5 GiB). From GPU_BOUND_TOKENS
# the GPU is busy anyway (and auto checkpointing offloads, which a capture cannot hold).
GRAPHS_CHOICES = ("auto", "on", "off")
# A graphed micro-batch is right-padded to a multiple of this many positions, so that few shapes recur (one graph per
# 256 of length; at most 1/8 of 2,048 positions wasted). The estimator sizes graphed micro-batches at the padded length.
GRAPH_BUCKET_TOKENS = 256


def graph_bucket(length: int) -> int:
    """The length a graphed micro-batch of `length` positions is padded to.

    >>> graph_bucket(2000), graph_bucket(2048), graph_bucket(1)
    (2048, 2048, 256)
    """
    return -(-length // GRAPH_BUCKET_TOKENS) * GRAPH_BUCKET_TOKENS


def graphs_blocker(*, dropout: float, loss_impl: str, checkpointing_name: str, offload_lm_head: bool, packing: bool,
                   mlp_tile_tokens: int, compute_dtype: str) -> str | None:
    """Why a setup cannot run as CUDA graphs, from its settings alone (the runtime adds the device and the ranks), or
    None when it can."""
    for bad, why in (
        (checkpointing_name != AUTO_CHECKPOINTING and checkpointing(checkpointing_name).to_host,
         "offloaded checkpointing copies to host RAM, which a capture cannot hold (from "
         f"{GPU_BOUND_TOKENS:,} tokens per micro-batch the step is GPU-bound anyway)"),
        (offload_lm_head, "model.offload_lm_head streams the head through the host"),
        (loss(loss_impl).builder is not None or not loss(loss_impl).chunked, "it needs train.loss_impl: chunked"),
        (dropout > 0, "it needs lora.dropout: 0 (the recompute's dropout masks are not captured)"),
        (compute_dtype == "fp16", "fp16's loss scaling is not captured (bf16 only)"),
        (packing, "packed rows carry sample boundaries that change every step"),
        (mlp_tile_tokens > 0, "not with train.mlp_tile_tokens (not measured together)"),
    ):
        if bad:
            return why
    return None


def resolve_cuda_graphs(value, micro_batch_tokens: int, blocker: str | None) -> bool:
    """Whether a run captures its micro-batches: 'on' (or true) where nothing blocks it; 'auto' also only below
    GPU_BOUND_TOKENS tokens per micro-batch; 'off' (or false) never.

    >>> resolve_cuda_graphs("auto", 2048, None), resolve_cuda_graphs("auto", 8192, None), resolve_cuda_graphs("on", 8192, None)
    (True, False, True)
    """
    if blocker is not None or value in ("off", False):
        return False
    return graphs_on(value) or micro_batch_tokens < GPU_BOUND_TOKENS


def graphs_on(value) -> bool:
    """A train.cuda_graphs value that captures whatever the micro-batch ('on'; a resolved run records on or off)."""
    return value in ("on", True)


def graphs_value(on: bool) -> str:
    """What a run records for train.cuda_graphs once resolved."""
    return "on" if on else "off"


def resolve_checkpointing(name: str, micro_batch_tokens: int, to_host_ok: bool = True) -> str:
    """The checkpointing a config's value means: 'auto' -> offload for micro-batches of GPU_BOUND_TOKENS or more
    (where to_host_ok: not under fsdp), else on; any other name as it is.

    >>> resolve_checkpointing("auto", 4 * 2048), resolve_checkpointing("auto", 2048), resolve_checkpointing("off", 1)
    ('offload', 'on', 'off')
    """
    if name != AUTO_CHECKPOINTING:
        return name
    return "offload" if micro_batch_tokens >= GPU_BOUND_TOKENS and to_host_ok else "on"


@dataclass(frozen=True)
class Quant:
    name: str
    help: str
    bits: int                      # bits per stored base weight; 16: not quantized (the compute dtype)
    dequant_bytes_per_param: float  # read the packed weight and constants, write the bf16 copy (throughput)
    hf: str                        # how transformers asks for it


QUANTS = (
    Quant("nf4", "4-bit bitsandbytes NormalFloat (QLoRA)", 4, 0.5 + 0.13 + 2, "load_in_4bit, nf4"),
    Quant("fp4", "4-bit bitsandbytes float", 4, 0.5 + 0.13 + 2, "load_in_4bit, fp4"),
    Quant("int8", "LLM.int8", 8, 1 + 2 + 2, "load_in_8bit"),
    Quant("none", "16-bit (4x the weight memory of nf4)", 16, 0.0, "no quantization_config"),
)
BNB_BLOCK = 64       # bitsandbytes 4-bit quantizes weights in blocks of 64, one absmax per block
BNB_DQ_BLOCK = 256   # double quant: the absmaxes are themselves quantized to 8 bit in blocks of 256


@dataclass(frozen=True)
class Dtype:
    name: str
    bytes: int
    torch_name: str                # getattr(torch, torch_name) in the runtime
    matmul_slowdown: int           # fp32 runs on TF32/CUDA cores: ~4x below the bf16 tensor-core peak
    hf_names: tuple[str, ...]


DTYPES = (
    Dtype("bf16", 2, "bfloat16", 1, ("torch.bfloat16", "bfloat16", "bf16")),
    Dtype("fp16", 2, "float16", 1, ("torch.float16", "float16", "fp16", "torch.half")),
    Dtype("fp32", 4, "float32", 4, ("torch.float32", "float32", "fp32")),
)


@dataclass(frozen=True)
class Attention:
    name: str
    materializes_scores: bool   # keeps heads x seq x seq scores per layer (and cannot skip a packed row's others)
    hf: str                     # transformers' attn_implementation
    causal_kernel: bool = False  # called with no mask, it runs PyTorch SDPA's is_causal kernel: train.cuda_graphs'
    #                              graphed pass runs under it (runtime.graphs.causal_attention)


ATTENTIONS = (Attention("sdpa", False, "sdpa", causal_kernel=True), Attention("flash", False, "flash_attention_2"),
              Attention("eager", True, "eager"))


def attention_of_hf(implementation: str | None) -> Attention | None:
    """The spec of transformers' attn_implementation name ('sdpa' -> sdpa), or None for one qlorafit does not know."""
    return next((a for a in ATTENTIONS if a.hf == implementation), None)


# liger-kernel's RMSNorm, RoPE and SwiGLU in the graphed layers (runtime.model.fuse_with_liger; the gpu extra). The model
# types liger-kernel 0.8.5 patches (its MODEL_TYPE_TO_APPLY_LIGER_FN): the runtime fuses only these, and the estimator
# sizes their layers with those kernels' saved tensors (estimate._layer_bytes)
LIGER_MODEL_TYPES = (
    "deepseek_v2", "deepseek_v3", "exaone4", "falcon_h1", "gemma", "gemma2", "gemma3", "gemma3_text", "glm4", "gpt_oss",
    "granite", "hunyuan_v1_dense", "hunyuan_v1_moe", "llama", "llama4", "llama4_text", "ministral", "mistral", "mixtral",
    "nemotron", "olmo2", "olmo3", "phi3", "qwen2", "qwen3", "qwen3_moe", "qwen3_next", "smollm3")


def liger_installed() -> bool:
    """Whether liger-kernel can be imported here: found, not imported (that would import torch)."""
    import importlib.util
    return importlib.util.find_spec("liger_kernel") is not None


@dataclass(frozen=True)
class Stack:
    """The trainer around the model: what it does to memory beyond the Setup's knobs."""
    name: str
    help: str
    host_levers: bool          # can keep the embedding and lm_head in host RAM (qlorafit.runtime.offload)
    own_runtime: bool          # runs in qlorafit.runtime: its loss (whose standard path slices the logits: one more
    #                            bf16 copy) and its FSDP wrapping
    fp32_upcast: bool          # prepare_model_for_kbit_training: every weight not in 4 bits (embedding, norms,
    #                            lm_head, a MoE's experts) becomes fp32, and with them the residual stream
    expandable_segments: bool  # its allocator default (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)
    default_loss: str | None   # the loss it runs where the user chose none (None: the train config's)
    lean_loss: str             # its loss without full fp32 logits (the doctor's fix)


STACKS = (
    Stack("qlorafit", "qlorafit's own trainer", True, True, False, True, None, "chunked"),
    Stack("hf", "transformers Trainer + PEFT with prepare_model_for_kbit_training (the doctor's scripts)", False,
          False, True, False, "standard", "fused"),
)


KINDS = {"optimizer": "OPTIMIZERS", "loss": "LOSSES", "checkpointing": "CHECKPOINTING", "quant": "QUANTS",
         "dtype": "DTYPES", "attention": "ATTENTIONS", "stack": "STACKS"}


def specs(kind: str) -> tuple:
    """The specs of one kind ('optimizer', 'loss', ...), read when asked (a table is a module-level tuple)."""
    return globals()[KINDS[kind]]


def names(table) -> tuple[str, ...]:
    return tuple(s.name for s in table)


def get(kind: str, name: str):
    """The spec of one kind by name: get('optimizer', 'adamw_8bit'); a ValueError lists the choices."""
    for s in specs(kind):
        if s.name == name:
            return s
    raise ValueError(f"{kind} {name!r}: choose from {', '.join(names(specs(kind)))}")


# optimizer('adamw_8bit') -> its Optimizer spec, loss('chunked') -> its Loss spec, ... (KINDS' order)
optimizer, loss, checkpointing, quant, dtype, attention, stack = (partial(get, kind) for kind in KINDS)


def load(builder: str):
    """Import a spec's builder ('module:attribute') now: the runtime calls this when a run starts."""
    module, _, attr = builder.partition(":")
    return getattr(importlib.import_module(module), attr)


def stronger_checkpointing(name: str, to_host_ok: bool = True) -> Checkpointing | None:
    """The guard's next rung after `name` (off -> on -> offload), None at the top; host-RAM rungs only if to_host_ok.

    >>> stronger_checkpointing("off").name, stronger_checkpointing("on", to_host_ok=False)
    ('on', None)
    """
    after = CHECKPOINTING[CHECKPOINTING.index(checkpointing(name)) + 1:]
    return next((c for c in after if to_host_ok or not c.to_host), None)


def shardable_optimizer() -> str:
    """The optimizer FSDP runs (its parameters are sharded DTensors that bitsandbytes' optimizers cannot step)."""
    return next(o.name for o in OPTIMIZERS if o.shardable and o.plannable)


def optimizer_from_hf(name: str) -> str | None:
    """'adamw_bnb_8bit' (TrainingArguments.optim, axolotl, ...) -> 'adamw_8bit'; None when no spec claims it."""
    return next((o.name for o in OPTIMIZERS if name in o.hf_names or name == o.name), None)


def dtype_from_hf(name: str) -> str | None:
    return next((d.name for d in DTYPES if name in d.hf_names), None)


def eight_bit_twin(paged: bool) -> str:
    """The plannable 8-bit optimizer, paged or not: what 'use an 8-bit optimizer' means."""
    return next(o.name for o in OPTIMIZERS if o.eight_bit and o.plannable and o.paged == paged)


def plannable(specs) -> tuple[str, ...]:
    return tuple(s.name for s in specs if s.plannable)


def choices_help(specs) -> str:
    """'adamw: torch AdamW, ...; paged_adamw_32bit: ...' for a config field's help."""
    return "; ".join(f"{s.name}: {s.help}" for s in specs)
