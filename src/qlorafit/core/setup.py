"""The estimator's view of one training configuration (Setup), and its link to the train config, declared once.

Each Setup field's metadata says where the knob lives in the train config ('train.optimizer'), its CLI flag, its
allowed values (from qlorafit.core.options) and its role:
  fixed     the user's choice; `plan` takes it as a flag and keeps it
  searched  the planner picks it (`plan_axis` names the PlanRequest field holding the values to try); a planned
            config writes it and `train --plan auto --resume` keeps it
  workload  the shape of the data (sequence length)
From this one declaration come setup_from_config / apply_setup (Config <-> Setup), the planned keys a resume keeps,
the doctor's YAML, the estimate and plan flags and the planner's search axes. Plain Python, no torch.
"""

import copy
import dataclasses
from dataclasses import dataclass, field

from qlorafit.core import options as O
from qlorafit.core.config import Config
from qlorafit.core.shapes import ModelShape


def _get(cfg: Config, key: str):
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def _set(cfg: Config, key: str, value) -> None:
    section, _, name = key.partition(".")
    setattr(getattr(cfg, section), name, value)


def resolve_dtype(value: str, gpu_bf16: bool | None = True) -> str:
    """compute_dtype auto -> bf16 where the GPU has it or it is unknown (None), else fp16."""
    return ("fp16" if gpu_bf16 is False else "bf16") if value == "auto" else value


def knob(config: str | None = None, *, help: str, flag: tuple = (), choices: tuple | str | None = None,
         role: str | None = None, plan_axis: str | None = None, default=dataclasses.MISSING, to_setup=None,
         to_config=None):
    """A Setup field linked to the train config key `config`; its default is the config's, seen through to_setup.
    choices: the allowed values, or the kind of spec in qlorafit.core.options whose names they are ('optimizer')."""
    to_setup = to_setup or (lambda v: v)
    if default is dataclasses.MISSING:
        default = to_setup(_get(Config(), config))
    meta = {"config": config, "help": help, "flag": flag, "choices": choices, "role": role, "plan_axis": plan_axis,
            "to_setup": to_setup, "to_config": to_config or (lambda v: v)}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Setup:
    """One training configuration, as the estimator sees it. Defaults are qlorafit's own (the train config's)."""

    quant: str = knob("model.quant", flag=("--quant",), choices="quant", role="fixed",
                      help="base weight format")
    double_quant: bool = knob("model.double_quant", flag=("--double-quant",), role="fixed",
                              help="quantize the 4-bit quantization constants again (saves ~0.37 bit per weight)")
    compute_dtype: str = knob("model.compute_dtype", flag=("--compute-dtype",), choices="dtype",
                              role="fixed", to_setup=resolve_dtype,
                              help="dtype of activations and of the weights dequantized for each matmul")
    lora_r: int = knob("lora.r", flag=("--rank", "-r"), role="fixed", help="LoRA rank")
    lora_targets: tuple[str, ...] = knob("lora.targets", flag=("--targets",), role="fixed", to_setup=tuple,
                                         to_config=list, help="LoRA targets: comma list (q_proj,v_proj) or all-linear")
    lora_dropout: float = knob("lora.dropout", flag=("--dropout",), role="fixed",
                               help="LoRA dropout; above 0 each adapted module keeps a dropped copy of its input")
    lora_dtype: str = knob("lora.dtype", flag=("--lora-dtype",), choices=("fp32", "bf16"), role="fixed",
                           help="dtype of the LoRA weights")
    batch_size: int = knob("train.micro_batch_size", flag=("--batch", "-b"), role="searched",
                           help="micro-batch size (sequences per forward pass)")
    seq_len: int = knob("data.max_seq_length", flag=("--seq", "-s"), role="workload",
                        help="sequence length in tokens (with packing, the packed length)")
    packing: bool = knob("data.packing", flag=("--packing",), role="searched",
                         help="samples packed into full rows: memory is that of full rows")
    grad_checkpointing: str = knob("train.grad_checkpointing", flag=("--checkpointing",),
                                   choices=O.names(O.CHECKPOINTING) + (O.AUTO_CHECKPOINTING,), role="searched",
                                   plan_axis="checkpointing",
                                   help=f"gradient checkpointing ({O.AUTO_CHECKPOINTING}: offload from "
                                        f"{O.GPU_BOUND_TOKENS:,} tokens per micro-batch, else on)")
    optimizer: str = knob("train.optimizer", flag=("--optimizer",), choices="optimizer", role="searched",
                          plan_axis="optimizers", help="optimizer (its states are sized from qlorafit.core.options)")
    offload_embedding: bool = knob("model.offload_embedding", flag=("--offload-embedding",), role="searched",
                                   plan_axis="offload_embedding", help="keep the input embedding in host RAM")
    offload_lm_head: bool = knob("model.offload_lm_head", flag=("--offload-lm-head",), role="searched",
                                 plan_axis="offload_lm_head",
                                 help="keep lm_head in host RAM, streamed through the GPU by the loss")
    loss_impl: str = knob("train.loss_impl", flag=("--loss",), choices="loss", role="searched",
                          plan_axis="losses", help="loss implementation")
    mlp_tile_tokens: int = knob("train.mlp_tile_tokens", flag=("--mlp-tile",), role="searched", plan_axis="mlp_tiles",
                                help="run the MLP on slices of this many positions (long contexts; 0 = off)")
    compile: bool = knob("train.compile", flag=("--compile",), role="searched", plan_axis="compile",
                         help="torch.compile'd decoder layers: the speed model reads it, and the allocator slack of "
                              "offloaded checkpointing")
    cuda_graphs: bool | str = knob("train.cuda_graphs", flag=("--cuda-graphs",), choices=O.GRAPHS_CHOICES,
                                   role="fixed", to_config=lambda v: ("on" if v else "off") if isinstance(v, bool) else v,
                                   help="each micro-batch as one CUDA graph (auto: below "
                                        f"{O.GPU_BOUND_TOKENS:,} tokens per micro-batch where the setup allows it; "
                                        "its memory pool held between steps, the layers then not compiled)")
    attn_impl: str = knob("model.attn_impl", flag=("--attn",), choices="attention", role="fixed",
                          help="attention implementation; eager materializes heads x seq x seq scores")
    stack: str = knob(flag=("--stack",), choices="stack", default="qlorafit", help=O.choices_help(O.STACKS))
    liger: bool | None = knob(flag=("--liger",), default=None, role="fixed",
                              help="liger-kernel installed where the run goes (its fused RMSNorm and SwiGLU keep "
                                   "less for backward in graphed layers); unset: whether it is installed here")
    expandable_segments: bool | None = knob("guard.expandable_segments", flag=("--expandable-segments",),
                                            default=None,
                                            help="PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True; unset: the "
                                                 "stack's default (qlorafit on, hf off)")

    def __post_init__(self):  # 'auto' checkpointing means what it means for this micro-batch (options.resolve_...)
        object.__setattr__(self, "grad_checkpointing",
                           O.resolve_checkpointing(self.grad_checkpointing, self.batch_size * self.seq_len))

    def graphs(self) -> bool:
        """Whether this setup runs as CUDA graphs (train.cuda_graphs, resolved for its micro-batch and settings;
        qlorafit's own trainer only)."""
        blocker = None if O.stack(self.stack).own_runtime else "another trainer"
        blocker = blocker or O.graphs_blocker(
            dropout=self.lora_dropout, loss_impl=self.loss_impl or "chunked", checkpointing_name=self.grad_checkpointing,
            offload_lm_head=self.offload_lm_head, packing=self.packing, mlp_tile_tokens=self.mlp_tile_tokens,
            compute_dtype=self.compute_dtype)
        return O.resolve_cuda_graphs(self.cuda_graphs, self.batch_size * self.seq_len, blocker)

    def fused_layers(self, shape: ModelShape) -> bool:
        """Whether liger-kernel's RMSNorm and SwiGLU run in the layers (runtime.model.fuse_with_liger): under CUDA
        graphs, for the model types it patches (options.LIGER_MODEL_TYPES), where it is installed."""
        if not self.graphs() or shape.model_type not in O.LIGER_MODEL_TYPES:
            return False
        return O.liger_installed() if self.liger is None else self.liger

    def expandable(self) -> bool:
        return O.stack(self.stack).expandable_segments if self.expandable_segments is None else self.expandable_segments

    def targets(self, shape: ModelShape) -> tuple[str, ...]:
        """The adapted linear names as the model has them (ModelShape.expand_targets): 'all-linear' -> every nn.Linear
        of a layer, never a MoE model's routed experts (qlorafit.runtime.model.lora_target_modules)."""
        return shape.expand_targets(self.lora_targets)

# What a stack runs where the user chose nothing: on hf the model's own cross-entropy on full fp32 logits (qlorafit's
# chunked loss does not exist there, so its default would under-count by the logits).
STACK_DEFAULTS = {s.name: {"loss_impl": s.default_loss} for s in O.STACKS if s.default_loss}


def with_stack_defaults(values: dict) -> dict:
    """Setup keyword arguments with the stack's own defaults where a value is None (not given)."""
    out = dict(values)
    for k, v in STACK_DEFAULTS.get(out.get("stack") or "qlorafit", {}).items():
        if out.get(k) is None:
            out[k] = v
    return {k: v for k, v in out.items() if v is not None or k == "expandable_segments"}


KNOBS = tuple(dataclasses.fields(Setup))


def choices(f) -> tuple | None:
    """The allowed values of Setup field `f` (None: any value of its type)."""
    c = f.metadata["choices"]
    return O.names(O.specs(c)) if isinstance(c, str) else c


def knobs(role: str | None = None, linked: bool = False) -> list:
    """Setup fields with the given role (None: all), only those with a config key if `linked`."""
    return [f for f in KNOBS if (role is None or f.metadata["role"] == role) and (f.metadata["config"] or not linked)]


def setup_from_config(cfg: Config, gpu_bf16: bool | None = True) -> Setup:
    """The estimator's view of a train config (compute_dtype auto -> bf16 where the GPU has it or it is unknown
    (None), else fp16). The one mapping from Config to Setup: plan, train's estimate.json and doctor use it."""
    values = {}
    for f in knobs(linked=True):
        v = _get(cfg, f.metadata["config"])
        values[f.name] = resolve_dtype(v, gpu_bf16) if f.name == "compute_dtype" else f.metadata["to_setup"](v)
    return Setup(**values)


def apply_setup(cfg: Config, s: Setup, names=None) -> Config:
    """A copy of `cfg` with the config keys of Setup fields `names` (default: all linked) set from `s`. A key whose
    current value already means the same (compute_dtype auto for bf16, a list for a tuple) is left as it is."""
    out = copy.deepcopy(cfg)
    for f in knobs(linked=True):
        if names is not None and f.name not in names:
            continue
        key, v = f.metadata["config"], getattr(s, f.name)
        if v is None or _means(f, _get(out, key), v):
            continue
        _set(out, key, f.metadata["to_config"](v))
    return out


def _means(f, config_value, setup_value) -> bool:
    if f.name == "compute_dtype":  # auto means bf16 or fp16, whichever the GPU has
        return setup_value in (resolve_dtype(config_value, True), resolve_dtype(config_value, False))
    return f.metadata["to_setup"](config_value) == setup_value


# The config keys of the Setup fields a plan chooses, with train.grad_accum: what a planned run keeps on --resume
PLANNED_KEYS = tuple(f.metadata["config"] for f in knobs("searched")) + ("train.grad_accum",)


def keep_planned(cfg: Config, planned: Config) -> Config:
    """`cfg` with every planned key taken from `planned` (a resumed `--plan auto` run keeps the plan it started with)."""
    out = copy.deepcopy(cfg)
    for key in PLANNED_KEYS:
        _set(out, key, _get(planned, key))
    if cfg.dist.strategy == "auto":  # a multi-GPU plan also chose the strategy (core.plan.plan_ranks)
        out.dist.strategy, out.dist.cpu_offload = planned.dist.strategy, planned.dist.cpu_offload
    return out
