"""Predicted training speed (tokens/s) of one QLoRA configuration on one GPU: a roofline-style model, plain Python.

Each kernel family costs max(FLOPs / achieved FLOP/s, bytes / achieved bandwidth), summed over what one optimizer
step does:
  forward      2 x params per token (decoder linears and lm_head) + attention (4 x layers x seq x q_dim for sdpa)
  recompute    another forward of the decoder when checkpointing is on or offloaded, less the MLP's frozen output
               projection where the recompute stops before it (recompute_skips_output_projection)
  backward     2 x params per token: the base is frozen, so only input gradients flow; LoRA adds its weight grads
  dequant      every 4-bit linear is dequantized to bf16 in forward, again in recompute and again in backward: a
               per-micro-batch cost spread over batch x seq tokens, which is why larger micro-batches are faster
  elementwise  norms, RoPE, SiLU, residual adds, LoRA dropout: bytes moved per token, bandwidth-bound
  loss         standard (full fp32 logits) / chunked (qlorafit's: gradient in forward, per chunk) / fused (liger)
  offload      layer inputs to host RAM and back over PCIe (checkpointing=offload; on a side stream, behind the
               pass's own compute, plus a host cost per optimizer step), the embedding lookup in host RAM,
               lm_head's weight copied to the GPU once per micro-batch (offload_lm_head)
  launches     the host: eager PyTorch + PEFT + bitsandbytes spend tens of microseconds of Python and dispatch per
               kernel. The host runs ahead of the GPU, so a step takes max(GPU time, host time); this part is
               the time the GPU waits on the host (0 when the GPU is the bottleneck). It is what makes small
               micro-batches slow: an 8B model at 1 x 2,048 tokens keeps the H200 busy only ~50 % of the step
               (benchmarks/step_probe.py profile), a 1B model at 1 x 2,048 far less (benchmarks/plan_check.py).
  optimizer    once per optimizer step, over the LoRA parameters only

The efficiency factors (fraction of the datasheet peak actually achieved) are calibrated on the GPU:
benchmarks/results/throughput_calibration.json overrides the starting values below, globally or per GPU.
The ranking of configurations matters more than the absolute number; the model is built to get the ordering right.
"""

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from qlorafit.core import options as O
from qlorafit.core.catalog import GPU, read_json
from qlorafit.errors import UserError
from qlorafit.core.estimate import (Setup, layer_activation_bytes_per_token, lm_head_slice_rows, lora_params,
                               loss_chunk_tokens)
from qlorafit.core.shapes import ModelShape

CALIBRATION_ENV = "QLORAFIT_THROUGHPUT_CALIBRATION"
SHIPPED_CALIBRATION = Path(__file__).resolve().parents[1] / "assets" / "throughput_calibration.json"
"""The H200 fit shipped with the package (benchmarks/fit_throughput.py --write writes it)."""

_KERNELS_PER_LAYER = 28          # forward kernels of one Llama decoder layer without LoRA (norms, 7 matmuls, RoPE, ...)
_KERNELS_PER_LORA_TARGET = 6     # dropout, x@A, @B, scale, add (+ casts)


@dataclass(frozen=True)
class Calibration:
    """Achieved fractions of the datasheet peaks, and fixed costs: starting values, each calibrated on the GPU."""

    matmul_efficiency: float = 0.40  # of the bf16 tensor peak, by (tokens x h) @ (h x out) matmuls (QLoRA's: ~35-45%)
    attention_efficiency: float = 0.35  # of the peak, by sdpa/flash attention (forward and backward)
    bandwidth_efficiency: float = 0.70  # of the datasheet bandwidth, by dequant, elementwise and loss kernels
    pcie_bytes_per_s: float = 20e9  # host<->GPU copy rate of offloaded checkpoints (pinned, PCIe 4 x16 ~20 GB/s)
    offload_host_s_per_step: float = 0.0
    """checkpointing=offload: host time per optimizer step; like all host time it shows only where the host is the
    bottleneck. Fitted on the offloaded/on pairs of benchmarks/results/versus-*.jsonl (per step, not per micro-batch:
    2 x 4 x 512 measured no cost where 1 x 2,048 measured 0.80-0.91x; what it is was not profiled)."""
    host_bytes_per_s: float = 10e9  # host RAM gather rate for the embedding lookup when the embedding stays in host RAM
    kernel_overhead_s: float = 5e-6  # GPU-side fixed cost per kernel (launch gap, tail)
    host_s_per_kernel: float = 0.0
    """Host (Python + dispatch) time per kernel launched; a micro-batch takes max(GPU time, host time). 0: the host is
    never the bottleneck."""
    compile_host_factor: float = 0.72
    """train.compile: the host time of a micro-batch, as a fraction of the eager one (Dynamo's guards and the fused
    kernels' fewer launches). Starting value from one profile (1 x 2,048: ~390 -> 286 ms); fitted on the compiled
    rows of benchmarks/results/versus-*.jsonl."""
    compile_elementwise_factor: float = 0.3
    """train.compile: the elementwise and cast kernels' GPU time, as a fraction of eager's (Inductor fuses the norms,
    RoPE, SwiGLU, dropout and casts). Starting value from one profile (73 -> 19 ms per 2,048-token step); fitted
    with compile_host_factor."""
    source: str = "built-in starting values (not yet calibrated)"


@dataclass(frozen=True)
class Throughput:
    """Predicted speed of one configuration. Times are seconds per optimizer step, per part."""

    tokens_per_s: float  # real (non-padding) tokens trained per second
    step_s: float
    parts_s: dict
    tokens_per_step: float


# train.cuda_graphs: the share of the per-kernel gap that remains when a graph replays a micro-batch's kernels (the host
# is out, the GPU's own gaps between small kernels are not). Fitted in sample on the two default rows of session 9's
# call 2 (benchmarks/results/versus-h200-2026-11-30-s9-call2.jsonl: graphs with liger's fused norms, RoPE and SwiGLU,
# and SDPA's causal kernel): 0.3 predicts 2 x 4 x 512 at 9,304 against 9,470 tok/s measured (-1.8 %) and 1 x 2,048 at
# 10,957 against 10,696 (+2.4 %). The session 7 value, 0.5, was -12 % and -4 % there
GRAPH_GAP_SHARE = 0.3


def load_calibration(gpu_name: str | None = None, path: str | Path | None = None) -> Calibration:
    """Calibration: the built-in starting values, overridden by the file's "default" and then its "gpus"[gpu_name].

    The file is `path`, else $QLORAFIT_THROUGHPUT_CALIBRATION, else the copy shipped in the package: never one that
    happens to lie in the current directory, so a plan does not depend on where it runs. A named file that does not
    exist gives the built-in values.

    >>> load_calibration(path="/nonexistent/none.json").matmul_efficiency
    0.4
    """
    p = _calibration_path(path)
    if p is None:
        return Calibration()
    raw = read_json(p)
    if not isinstance(raw, dict):
        raise UserError(f"{p}: expected a JSON object with 'default' and/or 'gpus'")
    known = {f.name for f in dataclasses.fields(Calibration)} - {"source"}
    values: dict = {}
    layers = [("default", raw.get("default") or {})]
    if gpu_name:
        layers.append((f"gpus.{gpu_name}", (raw.get("gpus") or {}).get(gpu_name) or {}))
    for where, layer in layers:
        for k, v in layer.items():
            if k not in known:
                raise UserError(f"{p}: unknown key '{where}.{k}' (known: {', '.join(sorted(known))})")
            if not isinstance(v, (int, float)) or v <= 0:
                raise UserError(f"{p}: '{where}.{k}' must be a positive number, got {v!r}")
            values[k] = float(v)
    return Calibration(**values, source=str(p)) if values else Calibration()


def _calibration_path(path) -> Path | None:
    if path is not None:
        p = Path(path)
        return p if p.is_file() else None
    return _calibration_path(os.environ[CALIBRATION_ENV]) if os.environ.get(CALIBRATION_ENV) else SHIPPED_CALIBRATION


def _roofline(flops: float, nbytes: float, flop_s: float, byte_s: float) -> float:
    return max(flops / flop_s, nbytes / byte_s)


def recompute_skips_output_projection(shape: ModelShape, s: Setup) -> bool:
    """Whether the checkpoint's recompute leaves out the dense MLP's frozen output projection (down_proj): one
    dequantize + matmul fewer per layer per micro-batch.

    The recompute rebuilds only the tensors backward needs, and a frozen 4-bit projection saves none (bitsandbytes'
    backward needs only the packed weight). A compiled layer is one autograd function, recomputed whole, unless the
    projection runs outside it: qlorafit.runtime.model.compile_layers does that from options.GPU_BOUND_TOKENS tokens
    per micro-batch (below, the graph break's host cost wins). Measured on Llama-3-8B: +5.4 % at 1 x 16,384 and
    +6.4 % at 4 x 2,048 (benchmarks/README.md, sixth session). LoRA on the projection saves its input, a MoE block is
    no dense MLP, and a tiled MLP (eager, with nested checkpoints of its own; not measured) is charged whole.
    Eager recompute stops before the projection too (640 dequantize kernels a step against compiled's 672), but the
    eager terms were fitted with a whole recompute charged: modelling it there moves that fit (matmul_efficiency
    0.8 -> 0.7, host_s_per_kernel 4e-5 -> 3e-5, worst error 0.48 -> 0.62), so eager keeps what it was fitted with.

    >>> from qlorafit.core.catalog import resolve_model
    >>> m = resolve_model("llama-3.1-8b")
    >>> [recompute_skips_output_projection(m, Setup(batch_size=b, seq_len=2048, compile=True)) for b in (1, 4)]
    [False, True]
    """
    if not O.checkpointing(s.grad_checkpointing).recompute or s.mlp_tile_tokens or "down_proj" in s.targets(shape):
        return False
    compiled = s.compile and not s.graphs()  # under train.cuda_graphs the layers are not compiled
    return compiled and s.batch_size * s.seq_len >= O.GPU_BOUND_TOKENS


@dataclass(frozen=True)
class _MicroBatch:
    parts: dict       # GPU seconds per part (launch gaps not included)
    kernels: int      # GPU kernels launched
    host_s: float     # the host's time to issue them (Python and dispatch)


def _micro_batch(shape: ModelShape, s: Setup, gpu: GPU, cal: Calibration, row_tokens: float,
                 attn_len: float | None) -> _MicroBatch:
    n = s.batch_size * row_tokens                       # tokens computed (padding included)
    dt = O.dtype(s.compute_dtype)
    a, slow = dt.bytes, dt.matmul_slowdown              # fp32 runs on TF32/CUDA cores: ~4x below the bf16 peak
    flop_s = gpu.bf16_tflops * 1e12 * cal.matmul_efficiency / slow
    attn_flop_s = gpu.bf16_tflops * 1e12 * cal.attention_efficiency / slow
    byte_s = gpu.mem_bandwidth_gbps * 1e9 * cal.bandwidth_efficiency
    ck = O.checkpointing(s.grad_checkpointing)
    recompute = ck.recompute

    p_dec = shape.quantized_linear_params()  # the 4-bit linears, dequantized and multiplied every pass
    # a MoE layer multiplies each token by its top-k experts only, straight from 16-bit weights (no dequant)
    p_experts = shape.expert_params() * shape.experts_per_token // shape.num_experts if shape.is_moe else 0
    p_head = shape.vocab_size * shape.hidden_size
    dequant_per_param = O.quant(s.quant).dequant_bytes_per_param

    def decoder_pass(p: int) -> tuple[float, float]:
        # the matmul (compute- or weight-read-bound), and the dequant kernel before it: read the packed weight and its
        # constants, write the bf16 copy (the matmul's own read is in its roofline)
        return (_roofline(2 * n * (p + p_experts), (p + shape.expert_params()) * a, flop_s, byte_s),
                p * dequant_per_param / byte_s)

    linear_pass, dequant_pass = decoder_pass(p_dec)   # forward; backward's input gradients cost the same
    rec_linear = rec_dequant = 0.0
    if recompute:
        skipped = shape.dense_layers * shape.intermediate_size * shape.hidden_size \
            if recompute_skips_output_projection(shape, s) else 0
        rec_linear, rec_dequant = decoder_pass(p_dec - skipped)
    # eager attention cannot skip the other samples of a packed row: it pays the full row
    scores = O.attention(s.attn_impl).materializes_scores
    attn_row = row_tokens if (scores or attn_len is None) else attn_len
    attn_fwd = 4 * shape.num_layers * attn_row * shape.q_dim * n / attn_flop_s
    if scores:  # scores written and read in the compute dtype and fp32 softmax, every layer
        attn_fwd += 3 * shape.num_layers * s.batch_size * shape.num_heads * attn_row**2 * (2 + 4) / byte_s
    attn_bwd = attn_fwd * (2 + (1 if recompute else 0))  # backward ~2x forward, + the recompute's forward

    n_lora = lora_params(shape, s)
    lin = shape.linear_shapes()
    targets = s.targets(shape)
    lora_io = sum(lin[t][0] + lin[t][1] for t in targets) * shape.num_layers * a  # read x, write the update
    if s.lora_dropout > 0:
        lora_io += sum(lin[t][0] for t in targets) * shape.num_layers * (a + 1)
    lora = _roofline(6 * n * n_lora, 3 * n * lora_io, flop_s, byte_s) + (n * lora_io / byte_s if recompute else 0)

    act = layer_activation_bytes_per_token(shape, s) * shape.num_layers
    elementwise = n * act * (2 + 3 + (2 if recompute else 0)) / byte_s  # write+read in forward, ~3x in backward
    if s.compile or s.graphs():  # Inductor fuses the norms, RoPE, SwiGLU, dropout and casts into
        # a few kernels; under train.cuda_graphs the layers run uncompiled and liger-kernel's Triton RMSNorm, RoPE and
        # SwiGLU do the same fusing (runtime.model.fuse_with_liger; the gpu extra installs it)
        elementwise *= cal.compile_elementwise_factor

    v = shape.vocab_size
    head_fwd = _roofline(2 * n * p_head, p_head * a, flop_s, byte_s)
    if s.offload_lm_head:            # streamed: per (slice, chunk) tile the chunked loss's work + the rescaling
        rows = lm_head_slice_rows(v, shape.hidden_size)
        tiles = -(-v // rows) * -(-n // loss_chunk_tokens(rows, int(n)))
        loss = 2 * head_fwd + n * v * 24 / byte_s + tiles * 14 * cal.kernel_overhead_s
    else:  # standard: bf16 logits, fp32 copy, log_softmax, backward through all; chunked: per chunk logits, fp32
        # copy, softmax - onehot, grad_h, all in forward; liger: logits, softmax and its gradient in place
        spec = O.loss(s.loss_impl)
        loss = 2 * head_fwd + n * v * spec.moved_bytes_per_logit / byte_s
        if spec.chunked:
            chunks = -(-n // loss_chunk_tokens(v, int(n)))
            loss += chunks * spec.kernels_per_chunk * cal.kernel_overhead_s

    kernels = shape.num_layers * (_KERNELS_PER_LAYER + _KERNELS_PER_LORA_TARGET * len(targets))
    kernels *= 1 + 2 + (1 if recompute else 0)
    host_s = kernels * cal.host_s_per_kernel * (cal.compile_host_factor if s.compile else 1.0)
    if s.graphs():  # one replay issues them all: the host only prepares the inputs
        host_s = 0.0

    offload = 0.0
    if ck.to_host:
        # every layer's input to host RAM in forward and back in backward, on a side stream: each direction costs
        # only what its pass's own compute (the decoder's matmuls and attention) does not hide. On Llama-3-8B at
        # 20 GB/s the copies are ~0.75x the forward's matmuls per token, so hidden at every length: offloaded/on
        # measured 0.99-1.00 per round at 4 x 2,048 and 16K (benchmarks/README.md)
        copy = shape.num_layers * n * shape.hidden_size * a / cal.pcie_bytes_per_s
        offload += max(0.0, copy - linear_pass - dequant_pass - attn_fwd)
        offload += max(0.0, copy - rec_linear - rec_dequant - linear_pass - dequant_pass - attn_bwd)
    if s.offload_embedding or (s.offload_lm_head and shape.tie_word_embeddings):  # tied: the lookup moves with the head
        # gather rows in host RAM, copy them over
        offload += n * shape.hidden_size * 2 / cal.host_bytes_per_s + n * shape.hidden_size * 2 / cal.pcie_bytes_per_s
    if s.offload_lm_head:  # the whole head over PCIe once per forward (eval forwards pay it too, not counted here)
        # the slices arrive on a side stream while the previous one is multiplied: only the part of the copy the
        # loss's own compute cannot hide costs time, plus the first slice, which nothing hides
        copy = p_head * 2 / cal.pcie_bytes_per_s
        offload += max(0.0, copy - loss) + copy / -(-v // lm_head_slice_rows(v, shape.hidden_size))

    parts = {
        "matmuls": 2 * linear_pass + rec_linear,  # forward, (recompute), backward input-gradients
        "dequant": 2 * dequant_pass + rec_dequant,
        "attention": attn_fwd + attn_bwd,
        "lora": lora,
        "elementwise": elementwise,
        "loss": loss,
        "offload": offload,
    }
    return _MicroBatch(parts, kernels, host_s)


def optimizer_step_seconds(shape: ModelShape, s: Setup, gpu: GPU, cal: Calibration) -> float:
    """One optimizer step over the LoRA parameters: bandwidth-bound state updates, clipping, zero_grad, launches."""
    n = lora_params(shape, s)
    byte_s = gpu.mem_bandwidth_gbps * 1e9 * cal.bandwidth_efficiency
    opt = O.optimizer(s.optimizer)
    # param r/w, grad read, the moments r/w (Adam fp32: 16 B, 8-bit: 4 B + absmax), + grad-norm read and zeroing
    per_param = 4 + 4 + 4 + opt.moved_bytes_per_param() + 4 + 4
    tensors = 2 * shape.num_layers * len(s.targets(shape))
    launches = tensors * opt.launches_per_tensor
    return n * per_param / byte_s + (launches + 10) * cal.kernel_overhead_s


def predict(shape: ModelShape, s: Setup, gpu: GPU, grad_accum: int = 1, row_tokens: float | None = None,
            real_tokens_per_row: float | None = None, cal: Calibration | None = None,
            attn_len: float | None = None) -> Throughput:
    """Tokens/s of `s` on `gpu` with `grad_accum` micro-batches per optimizer step.

    row_tokens: tokens each row is computed at (padding included); default s.seq_len (every row full).
    real_tokens_per_row: the non-padding tokens per row that count as trained; default row_tokens.
    attn_len: tokens each token attends over (packed rows: the sample length); default row_tokens.

    >>> from qlorafit.core.catalog import resolve_model, get_gpu
    >>> t = predict(resolve_model("llama-3.1-8b"), Setup(batch_size=2, seq_len=1024), get_gpu("rtx4090"), 8)
    >>> 500 < t.tokens_per_s < 5000
    True
    """
    cal = cal or Calibration()
    row = float(row_tokens or s.seq_len)
    real = float(real_tokens_per_row or row)
    mb = _micro_batch(shape, s, gpu, cal, row, attn_len)
    parts = {k: v * grad_accum for k, v in mb.parts.items()}
    launch_gaps = grad_accum * mb.kernels * cal.kernel_overhead_s * (GRAPH_GAP_SHARE if s.graphs() else 1.0)
    # the host runs ahead of the GPU within the step: only its excess over the GPU time shows (a per-step host cost,
    # offloading's, hides behind the GPU time of every micro-batch of the step)
    host_s = grad_accum * mb.host_s + (cal.offload_host_s_per_step if O.checkpointing(s.grad_checkpointing).to_host
                                       else 0.0)
    parts["launches"] = launch_gaps + max(0.0, host_s - sum(parts.values()) - launch_gaps)
    parts["optimizer"] = optimizer_step_seconds(shape, s, gpu, cal)
    step = sum(parts.values())
    tokens = grad_accum * s.batch_size * real
    return Throughput(tokens_per_s=tokens / step, step_s=step, parts_s=parts, tokens_per_step=tokens)
