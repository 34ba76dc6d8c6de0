"""Peak GPU memory per rank when a run spans several GPUs (qlorafit.runtime.dist), and the host RAM it needs.

Plain Python, no torch. It starts from the one-GPU estimate (qlorafit.core.estimate: activations, loss, slack are
per rank, since each rank trains its own micro-batches) and moves each component to where the strategy keeps it:

  ddp   everything replicated, as on one GPU; plus the flat fp32 buffer the LoRA gradients are all-reduced through
        once per step (qlorafit.runtime.dist.reduce_step), and NCCL's own buffers.
  fsdp  (FSDP2, as qlorafit.runtime.dist.wrap sets it up)
        sharded 1/N:  the 4-bit linear weights (stored as bf16 bytes); LoRA weights, gradients, optimizer state
        replicated:   the quantization constants (bitsandbytes keeps them on each module, outside FSDP's parameters);
                      lm_head (outside FSDP, read by the loss); the embedding and norms (the root unit, which FSDP
                      keeps gathered from its forward to the end of the backward)
        buffers:      two decoder layers gathered at once (the one computing and the one prefetched), their LoRA
                      gradients before the reduce-scatter
        cpu_offload:  the shards (4-bit weights, LoRA, optimizer state) live in pinned host RAM; lm_head too (the
                      loss streams it, as model.offload_lm_head does); the GPU holds the gathered layers only
Host RAM for loading: ddp loads each rank straight to its GPU (the checkpoint files are read through the page cache,
shared by the ranks); fsdp loads the whole 4-bit model into host RAM one rank at a time (runtime.dist.load_and_wrap):
one 4-bit copy, plus with cpu_offload the shards the earlier ranks already keep there.
"""

from dataclasses import dataclass, replace

from qlorafit.core import options as O
from qlorafit.core.estimate import Estimate, Setup, base_weight_bytes, estimate, lora_params
from qlorafit.core.shapes import ModelShape
from qlorafit.core.sizes import GIB, MIB
from qlorafit.errors import UserError

STRATEGIES = ("ddp", "fsdp")
# NCCL's communicator buffers, streams and the second CUDA context's extras, outside PyTorch's allocator. Measured on
# 2 x H200 (benchmarks/dist_gpu.py, 2026-11-29): each rank held 1.54-1.61 GiB outside PyTorch against 0.75 GiB for one
# process alone, so 0.86 GiB (the largest seen) per rank on top of the CUDA context.
NCCL_BYTES = 880 * MIB
# FSDP2's allocator cache. FSDP2 gathers each layer on its own CUDA stream, and the caching allocator keeps one pool
# per stream: the compute stream cannot reuse what the all-gather stream freed, and its own pool fragments between
# the long-lived checkpointed layer inputs and the short-lived dequantized weights. Measured (70B shape, 2 x H200,
# micro-batch 1 x 2048, benchmarks/results/dist-fsdp70-*-h200x2-2026-11-29*): the compute stream reserved 10.1 GiB
# while its allocations peaked near 5; a 10 GiB card (context included) ran out in the first forward with 7.0 GiB
# allocated. Reserved minus allocated was 1.39 x the per-rank activation terms with cpu_offload (the shards' host-to-
# device copies add to the churn) and 0.88 x without. Two runs of one shape: an in-sample fit, no held-out check yet.
FSDP_CACHE_RATIO = {True: 1.39, False: 0.88}
_ACTIVATION_TERMS = ("saved activations", "layer recompute", "dequantized weight", "gradient stream")


@dataclass(frozen=True)
class Part:
    name: str
    bytes: int       # on each GPU
    where: str       # sharded | replicated | buffer | activations (per rank's own micro-batches) | host
    note: str


@dataclass(frozen=True)
class RankEstimate:
    strategy: str
    gpus: int
    cpu_offload: bool
    one_gpu: Estimate           # the one-GPU estimate the per-rank figures start from
    parts: tuple[Part, ...]     # on each GPU at the one-GPU peak phase; their sum is peak_bytes
    peak_bytes: int             # per GPU
    host_load_bytes: int        # host RAM (the whole machine) while the model loads
    host_train_bytes: int       # host RAM (the whole machine) while training: offloaded shards, checkpoints, ...
    comm_bytes: int             # per GPU: all-reduce / all-gather / reduce-scatter buffers and NCCL's own

    def fits(self, budget_bytes: int) -> bool:
        return self.peak_bytes <= budget_bytes


def _layer_bytes(shape: ModelShape, s: Setup) -> tuple[int, int]:
    """(one decoder layer's 4-bit weights, its LoRA weights) in bytes."""
    q, _ = base_weight_bytes(shape, s)
    n_lora = lora_params(shape, s)
    return q // shape.num_layers, n_lora * 4 // shape.num_layers


def ddp_extra_bytes(shape: ModelShape, s: Setup, gpus: int) -> int:
    """What ddp adds per GPU to the one-GPU peak: the flat fp32 gradient buffer and NCCL's own (nothing on one GPU)."""
    return lora_params(shape, s) * 4 + NCCL_BYTES if gpus > 1 else 0


def estimate_ranks(shape: ModelShape, s: Setup, gpus: int, strategy: str, cpu_offload: bool = False,
                   context_bytes: int | None = None) -> RankEstimate:
    """Per-GPU peak of `s` (its batch_size is per GPU) on `gpus` GPUs of one machine; context_bytes as in estimate."""
    if strategy not in STRATEGIES:
        raise UserError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if gpus < 1:
        raise UserError(f"gpus: must be 1 or more, got {gpus}")
    if cpu_offload and strategy != "fsdp":
        raise UserError("cpu_offload: only with strategy fsdp (ddp keeps the whole model on each GPU)")
    if strategy == "fsdp" and (s.offload_lm_head or not O.optimizer(s.optimizer).shardable
                               or not O.stack(s.stack).own_runtime):
        raise UserError("fsdp: qlorafit's stack with the adamw optimizer and no lm_head offload "
                        "(dist.cpu_offload is fsdp's own host-RAM lever)")
    if strategy == "fsdp":  # as the runtime does: FSDP shards the embedding, its host-RAM lever is turned off, and
        # the layer inputs stay on the GPU (offloaded checkpointing runs as on)
        s = replace(s, offload_embedding=False, compile=False,
                    grad_checkpointing="on" if O.checkpointing(s.grad_checkpointing).to_host else s.grad_checkpointing)
    if gpus > 1:  # as the runtime does: CUDA graphs run in a single process only (runtime.graphs.unsupported)
        s = replace(s, cuda_graphs=O.graphs_value(False))
    one = estimate(shape, replace(s, offload_lm_head=True) if cpu_offload else s, context_bytes)
    n_lora = one.trainable_params
    return _ddp(shape, s, gpus, one, n_lora) if strategy == "ddp" else _fsdp(shape, s, gpus, one, n_lora, cpu_offload)


def _rest(one: Estimate, taken: set) -> list[Part]:
    """The one-GPU components not re-placed by the strategy: each rank's own activations, loss, slack, context."""
    return [Part(c.name, c.bytes, "activations" if c.name not in ("CUDA context", "allocator overhead",
                                                                   "dequantized weight") else "replicated", c.note)
            for c in one.components if c.name not in taken]


def _ddp(shape: ModelShape, s: Setup, gpus: int, one: Estimate, n_lora: int) -> RankEstimate:
    fixed = {"quantized weights", "quantization constants", "embeddings, lm_head, norms", "fp32 upcast",
             "LoRA weights", "LoRA gradients", "optimizer states", "optimizer temporaries"}
    parts = [Part(c.name, c.bytes, "replicated", c.note) for c in one.components if c.name in fixed]
    comm = (n_lora * 4 + NCCL_BYTES) if gpus > 1 else 0
    parts += _rest(one, fixed)
    if gpus > 1:
        parts += [Part("all-reduce buffer", n_lora * 4, "buffer", "every LoRA gradient in one flat fp32 buffer"),
                  Part("NCCL buffers", NCCL_BYTES, "buffer", "communicator buffers (measured on 2 x H200)")]
    host_train = one.host_bytes * gpus
    return RankEstimate("ddp", gpus, False, one, tuple(p for p in parts if p.bytes), sum(p.bytes for p in parts),
                        0, host_train, comm)


def _fsdp(shape: ModelShape, s: Setup, gpus: int, one: Estimate, n_lora: int, offload: bool) -> RankEstimate:
    n = gpus
    q, consts = base_weight_bytes(shape, s)
    layer_q, layer_lora = _layer_bytes(shape, s)
    lora_w = one.component("LoRA weights")
    lora_g = one.component("LoRA gradients")
    opt = one.component("optimizer states")
    tmp = one.component("optimizer temporaries")
    shard = (lambda b: 0) if offload else (lambda b: -(-b // n))
    where = "host" if offload else "sharded"
    parts = [
        Part("quantized weights", shard(one.component("quantized weights")), where, f"1/{n} of {s.quant} weights"),
        Part("quantization constants", one.component("quantization constants"), "replicated",
             "bitsandbytes keeps them on each module, outside FSDP"),
        Part("embeddings, lm_head, norms", one.component("embeddings, lm_head, norms"), "replicated",
             "lm_head outside FSDP; embedding and norms gathered all step (root unit)"
             + ("; lm_head in host RAM, streamed" if offload else "")),
        Part("LoRA weights", shard(lora_w), where, f"1/{n}"),
        Part("LoRA gradients", shard(lora_g), where, f"1/{n}"),
        Part("optimizer states", shard(opt), where, f"1/{n}, adamw"),
        Part("optimizer temporaries", shard(tmp), where, f"1/{n}"),
    ]
    taken = {p.name for p in parts}
    parts += _rest(one, taken)
    # two layers whole at once (computing + prefetched), each layer's LoRA gradients whole before the reduce-scatter
    gather = 2 * (layer_q + layer_lora) if n > 1 or offload else 0
    scatter = 2 * layer_lora if n > 1 else 0
    parts += [Part("all-gather buffers", gather, "buffer", "two decoder layers gathered whole"),
              Part("reduce-scatter buffers", scatter, "buffer", "one layer's LoRA gradients, whole and reduced")]
    if n > 1 or offload:  # the per-stream pools exist whenever FSDP gathers (see FSDP_CACHE_RATIO)
        churn = sum(one.component(name) for name in _ACTIVATION_TERMS)
        parts.append(Part("FSDP allocator cache", int(FSDP_CACHE_RATIO[offload] * churn), "buffer",
                          "per-stream pools and fragmentation (measured on one 70B shape)"))
    if n > 1:
        parts.append(Part("NCCL buffers", NCCL_BYTES, "buffer", "communicator buffers (measured on 2 x H200)"))
    comm = gather + scatter + (NCCL_BYTES if n > 1 else 0)
    model_4bit = q + consts + one.component("embeddings, lm_head, norms") + lora_w
    host_train = one.host_bytes * n
    if offload:  # the shards of every rank (one whole copy over the machine), the head per rank, the optimizer
        host_train += q + lora_w + lora_g + opt + tmp + one.host_bytes
    # one rank at a time holds a whole 4-bit copy; with cpu_offload the earlier ranks keep their shards there
    host_load = model_4bit + (host_train * (n - 1) // n if offload else 0)
    parts = tuple(p for p in parts if p.bytes)
    return RankEstimate("fsdp", n, offload, one, parts, sum(p.bytes for p in parts), host_load, host_train, comm)


def table_text(r: RankEstimate, budget_bytes: int | None = None, budget_name: str = "") -> str:
    s = r.one_gpu.setup
    head = (f"{r.one_gpu.model} on {r.gpus} GPUs, {r.strategy}{' + cpu_offload' if r.cpu_offload else ''}: "
            f"micro-batch {s.batch_size} x {s.seq_len} tokens per GPU, checkpointing {s.grad_checkpointing}, "
            f"{s.optimizer}")
    lines = [head, "", f"{'component (per GPU)':<32}{'GiB':>9}  {'where':<12}note"]
    for p in r.parts:
        lines.append(f"{p.name:<32}{p.bytes / GIB:>9.3f}  {p.where:<12}{p.note}")
    lines += [f"{'peak per GPU':<32}{r.peak_bytes / GIB:>9.3f}",
              f"{'one GPU alone':<32}{r.one_gpu.peak_bytes / GIB:>9.3f}  (the same run without the others)", "",
              f"communication buffers per GPU: {r.comm_bytes / GIB:.2f} GiB",
              f"host RAM while loading: {r.host_load_bytes / GIB:.2f} GiB"
              + (" (one 4-bit copy at a time: the ranks load one after another)" if r.strategy == "fsdp" else
                 " beyond the page cache (each rank loads straight to its GPU)"),
              f"host RAM while training: {r.host_train_bytes / GIB:.2f} GiB"]
    if budget_bytes is not None:
        ok = r.fits(budget_bytes)
        lines.append(f"{'FITS' if ok else 'DOES NOT FIT'} on {r.gpus} x {budget_name}: peak {r.peak_bytes / GIB:.2f} "
                     f"of {budget_bytes / GIB:.2f} GiB per GPU")
    return "\n".join(lines)


def to_json(r: RankEstimate, budget_bytes: int | None = None, budget_name: str = "") -> dict:
    d = {"strategy": r.strategy, "gpus": r.gpus, "cpu_offload": r.cpu_offload, "peak_bytes_per_gpu": r.peak_bytes,
         "one_gpu_peak_bytes": r.one_gpu.peak_bytes, "comm_bytes_per_gpu": r.comm_bytes,
         "host_load_bytes": r.host_load_bytes, "host_train_bytes": r.host_train_bytes,
         "parts": [{"name": p.name, "bytes": p.bytes, "where": p.where, "note": p.note} for p in r.parts]}
    if budget_bytes is not None:
        d.update(budget_name=budget_name, budget_bytes=budget_bytes, fits=r.fits(budget_bytes))
    return d


def fsdp_setup(s: Setup) -> Setup:
    """The setup FSDP-QLoRA runs: adamw, no host-RAM levers of the one-GPU stack (dist.cpu_offload is fsdp's own),
    checkpointing on where the one-GPU plan offloaded it."""
    return replace(s, optimizer=O.shardable_optimizer(), offload_embedding=False, offload_lm_head=False, compile=False,
                   grad_checkpointing="on" if O.checkpointing(s.grad_checkpointing).to_host else s.grad_checkpointing)
