"""The levers that lower a run's peak, declared once: the doctor's fixes (doctor/fixes.py) and the planner's ways out
when nothing fits (core/plan.ways_out) both read this table. Plain Python, no torch.

A lever is a change to the Setup, sized by re-estimating: `applies` says it can still be pulled, `change` the fields it
sets, `undo` (where the planner's search may already have pulled it) the fields without it. The doctor ranks by GiB
saved / `weight` (what it costs in speed or quality); its fix ids (`id`) are stable: tests/doctor_threads.py maps them.
`plan` is the planner's words for the lever ('': not one of its ways out).
"""

from dataclasses import dataclass

from qlorafit.core import options as O
from qlorafit.core.shapes import ATTN_LINEARS, MLP_LINEARS


@dataclass(frozen=True)
class Lever:
    id: str
    title: str
    cost: str
    weight: float
    applies: object
    change: object
    plan: str = ""
    undo: object = None
    adapter_only: bool = False
    """The lever needs frozen base weights (an adapter run): a full fine-tune, which trains every weight, cannot pull it
    (4-bit weights, LoRA settings, a frozen head streamed from host RAM)."""


def _host(s) -> bool:
    return O.stack(s.stack).host_levers


LEVERS = (
    Lever("quantize", "load the base weights in 4-bit NF4 (BitsAndBytesConfig)", "quality: slight", 1.0,
          lambda s: O.quant(s.quant).bits > 4, lambda s: {"quant": "nf4", "double_quant": True},
          "4-bit nf4 base weights", adapter_only=True),
    Lever("loss", "compute the loss without full fp32 logits (liger fused / qlorafit chunked)", "none", 0.3,
          lambda s: not O.loss(s.loss_impl).chunked, lambda s: {"loss_impl": O.stack(s.stack).lean_loss}),
    Lever("sdpa", "use sdpa attention instead of eager", "none", 0.3,
          lambda s: O.attention(s.attn_impl).materializes_scores, lambda s: {"attn_impl": "sdpa"}),
    Lever("checkpointing", "turn gradient checkpointing on", "speed: ~30% slower", 2.0,
          lambda s: not O.checkpointing(s.grad_checkpointing).recompute, lambda s: {"grad_checkpointing": "on"},
          "gradient checkpointing"),
    Lever("batch", "halve the micro-batch, double gradient accumulation (same effective batch)",
          "speed: fewer tokens per pass", 1.5, lambda s: s.batch_size > 1, lambda s: {"batch_size": s.batch_size // 2}),
    Lever("seq", "halve the maximum sequence length", "quality: longer samples truncated", 4.0,
          lambda s: s.seq_len > 256, lambda s: {"seq_len": s.seq_len // 2}),
    Lever("optim8", "use an 8-bit paged AdamW", "quality: negligible", 1.0,
          lambda s: not O.optimizer(s.optimizer).eight_bit, lambda s: {"optimizer": O.eight_bit_twin(paged=True)},
          "8-bit optimizer", lambda s: O.optimizer(s.optimizer).eight_bit and {"optimizer": "adamw"}),
    Lever("dropout0", "set LoRA dropout to 0", "quality: less regularization", 1.0,
          lambda s: s.lora_dropout > 0, lambda s: {"lora_dropout": 0.0}, "lora dropout 0 (no dropped input copies)", adapter_only=True),
    Lever("targets", "put adapters on the attention projections only", "quality: fewer adapted weights", 3.0,
          lambda s: "all-linear" in s.lora_targets or any(t in MLP_LINEARS for t in s.lora_targets),
          lambda s: {"lora_targets": ATTN_LINEARS}, adapter_only=True),
    Lever("rank", "halve the LoRA rank", "quality: smaller adapter", 2.5,
          lambda s: s.lora_r > 16, lambda s: {"lora_r": s.lora_r // 2}, adapter_only=True),
    Lever("double_quant", "quantize the quantization constants too (double quant)", "none", 0.3,
          lambda s: O.quant(s.quant).bits == 4 and not s.double_quant, lambda s: {"double_quant": True}, "double quant", adapter_only=True),
    Lever("offload_ckpt", "keep checkpointed layer inputs in host RAM", "speed: PCIe copies", 3.0,
          lambda s: _host(s) and O.checkpointing(s.grad_checkpointing).recompute
          and not O.checkpointing(s.grad_checkpointing).to_host, lambda s: {"grad_checkpointing": "offload"},
          "offloaded checkpointing", lambda s: O.checkpointing(s.grad_checkpointing).to_host and {"grad_checkpointing": "on"}),
    Lever("offload_embedding", "keep the input embedding in host RAM", "speed: small", 1.5,
          lambda s: _host(s) and not s.offload_embedding, lambda s: {"offload_embedding": True},
          "embedding in host RAM (offload_embedding)", lambda s: s.offload_embedding and {"offload_embedding": False}, adapter_only=True),
    Lever("offload_lm_head", "keep lm_head in host RAM and stream it through the loss (frozen head only)",
          "speed: one PCIe copy of the head per micro-batch", 2.0,
          lambda s: _host(s) and not s.offload_lm_head, lambda s: {"offload_lm_head": True},
          "lm_head in host RAM (offload_lm_head)", lambda s: s.offload_lm_head and {"offload_lm_head": False}, adapter_only=True),
)
