"""Peak GPU memory of one QLoRA training configuration, predicted from the model's shape alone.

Plain Python, no torch: a planner calls this thousands of times. Numbers in, numbers out: every component is an
integer count of bytes; rounding happens only where results are shown (qlorafit.core.estimate_view).

The model follows what the GPU does, phase by phase, and the peak is the largest phase, not a sum:
  load       the weights arrive (and, on the hf stack, get upcast to fp32)
  forward    weights + LoRA state + the activations saved for backward + the loss's logits
  backward   the same, with the logits' gradient at the start, or one layer recomputed under checkpointing
  optimizer  weights + LoRA weights, gradients and optimizer states + the step's temporaries
The per-token activation coefficients are derived from the tensors each module saves for backward; the few numbers
that could not be derived (allocator slack, CUDA context) are fitted on the GPU calibration runs in
tests/fixtures/calibration.json (see benchmarks/calibrate.py).
"""

from dataclasses import dataclass, field, replace

from qlorafit.core import options as O
from qlorafit.core.options import BNB_BLOCK, BNB_DQ_BLOCK, CHUNK_SIZING_BYTES_PER_LOGIT
from qlorafit.core.sizes import MIB
from qlorafit.core.setup import KNOBS, Setup, choices
from qlorafit.core.shapes import ALL_LINEARS, LORA_TARGET_ALIASES, MLP_NAMES, ModelShape
from qlorafit.errors import UserError

# --- constants that are facts of the libraries -------------------------------------------------------------------
LOSS_CHUNK_TARGET_BYTES = 256 * MIB  # qlorafit's chunked loss sizes chunks so one chunk's logits stay under this
LM_HEAD_SLICE_BYTES = 64 * MIB  # offload_lm_head streams the head through the GPU in slices of this many bytes

# --- constants fitted on the calibration runs (benchmarks/calibrate.py, tests/fixtures/calibration.json) ----------
# CUDA context, cuBLAS handles and lazily loaded kernels after the first step: (total - free) - reserved in every
# calibration run without offload on the H200 (CUDA 13.0, torch 2.11, driver 580); `qlorafit estimate
# --measure-context` reads it on another machine (qlorafit.runtime.context), --context-mib uses that figure
CUDA_CONTEXT_BYTES = 767 * MIB
# offloaded checkpointing adds a copy stream and pinned host buffers mapped into the device's address space: 841-855
# MiB outside the allocator in the three calibration runs with offload, against 767 without
OFFLOAD_CONTEXT_BYTES = 80 * MIB
# Reserved minus allocated at the peak, as fractions of the transient tensors there. Large fp32 logits blocks fragment
# the caching allocator most; expandable segments (qlorafit's default) recover much of it.
SLACK_LOGITS = {True: 0.20, False: 0.33}   # keyed by expandable_segments
SLACK_ACTIVATIONS = {True: 0.04, False: 0.06}
# offloaded checkpointing frees each layer input's GPU block only when its side-stream copy is done (record_stream),
# so the allocator cannot reuse those blocks at once: a larger share of the activations stays reserved
SLACK_ACTIVATIONS_OFFLOAD = 0.18
# ... and with compiled layers: offload's fetched inputs are allocated on the compute stream since session 7 (they
# came from the side stream's own pool before, which left 2.67 GiB reserved but unallocated at 16K). Reserved minus
# allocated is now 1.59 GiB at 16K and 0.81 GiB at 4 x 2,048 on Llama-3-8B (H200, benchmarks/results/versus-h200-
# 2026-11-29-s7-call1.jsonl). Fitted on those rows, in sample: the share that keeps each at or above its measured
# peak, +0.2 to +2.4 %. The eager share above was fitted before that change and is left on the safe side.
SLACK_ACTIVATIONS_OFFLOAD_COMPILED = 0.12
# train.cuda_graphs: the graphs' private memory pool is not shared with the eager allocations (the optimizer step,
# the eager passes before a capture). Measured as the extra NVML peak of the session 7 experiment over the compiled
# default on Llama-3-8B (H200, benchmarks/results/versus-h200-2026-11-29-s7-call6.jsonl): +0.47 GiB at 1 x 2,048 and
# +0.49 GiB at 2 x 4 x 512, the same at half the tokens, so a constant, not a share of the activations (in sample,
# two rows; the runtime now also empties the cache before each capture, so this is likely on the safe side)
GRAPH_POOL_EXTRA_BYTES = 490 * MIB
ALLOCATOR_FIXED_BYTES = 40 * MIB  # small-block pools, the 2 MiB granularity of the caching allocator


@dataclass(frozen=True)
class Component:
    """One line of the breakdown: bytes held at the peak phase, and a short note saying what it is."""

    name: str
    bytes: int
    note: str


@dataclass(frozen=True)
class Estimate:
    """The estimator's answer. All sizes in bytes."""

    model: str
    setup: Setup
    components: tuple[Component, ...]  # what is held at the peak, component by component; their sum is peak_bytes
    phases: dict[str, int] = field(default_factory=dict)
    """Bytes in use at the high point of each phase (load, forward, backward, optimizer)."""
    peak_phase: str = "backward"
    peak_bytes: int = 0
    host_bytes: int = 0
    """Host (CPU) RAM the configuration needs beyond the process itself: offloaded checkpoints, paged states."""
    trainable_params: int = 0
    tokens_per_micro_batch: int = 0

    def component(self, name: str) -> int:
        return next((c.bytes for c in self.components if c.name == name), 0)


def validate(shape: ModelShape, s: Setup) -> None:
    """Collect every problem with the setup, then raise once, naming each field."""
    # every field with declared choices (qlorafit.core.options) holds one of them
    problems = [f"{f.name}: unknown value {getattr(s, f.name)!r} (choose from {', '.join(choices(f))})"
                for f in KNOBS if choices(f) and getattr(s, f.name) not in choices(f)]
    if not isinstance(s.mlp_tile_tokens, int) or s.mlp_tile_tokens < 0:
        problems.append(f"mlp_tile_tokens: must be 0 (off) or a positive integer, got {s.mlp_tile_tokens!r}")
    problems += [f"{name}: must be a positive integer, got {v!r}" for name, v in
                 (("lora_r", s.lora_r), ("batch_size", s.batch_size), ("seq_len", s.seq_len))
                 if not isinstance(v, int) or isinstance(v, bool) or v <= 0]
    known = set(ALL_LINEARS) | set(LORA_TARGET_ALIASES) | {"all-linear"}
    bad = [t for t in s.lora_targets if t not in known]
    problems += [msg for wrong, msg in (
        (isinstance(s.lora_r, int) and s.lora_r > shape.hidden_size,
         f"lora_r: rank {s.lora_r} is larger than the hidden size {shape.hidden_size}"),
        (not 0 <= s.lora_dropout < 1, f"lora_dropout: must be in [0, 1), got {s.lora_dropout!r}"),
        (bad or not s.lora_targets,
         f"lora_targets: unknown module(s) {bad or '(none given)'}; use names from {sorted(known)}"),
        (s.offload_lm_head and not O.stack(s.stack).host_levers,
         "offload_lm_head: only qlorafit's own trainer streams lm_head from host RAM (stack qlorafit)")) if wrong]
    if problems:
        raise UserError("; ".join(problems))


# --- the pieces ---------------------------------------------------------------------------------------------------

def base_weight_bytes(shape: ModelShape, s: Setup) -> tuple[int, int]:
    """(weights, quantization constants) of the decoder's nn.Linear modules, on the GPU (a MoE model's routed experts
    are not among them: expert_weight_bytes)."""
    n = shape.quantized_linear_params()
    tensors = sum(count * len(shapes) for count, shapes, _ in shape.layer_kinds())
    bits = O.quant(s.quant).bits
    if bits == 4:
        blocks = -(-n // BNB_BLOCK)
        if s.double_quant:  # 8-bit absmax per block + an fp32 absmax per 256 blocks + one fp32 offset per tensor
            consts = blocks + -(-blocks // BNB_DQ_BLOCK) * 4 + tensors * 4
        else:  # one fp32 absmax per block of 64
            consts = blocks * 4
        return n // 2, consts
    if bits == 8:  # int8 weights + an fp32 scale per output row
        rows = sum(count * sum(o for _, o in shapes.values()) for count, shapes, _ in shape.layer_kinds())
        return n, rows * 4
    return n * _act_bytes(s), 0


def embedding_offloaded(s: Setup) -> bool:
    """model.offload_embedding is qlorafit's own lever (qlorafit.runtime.offload): the hf stack (Trainer + PEFT)
    keeps the embedding on the GPU whatever the Setup's default says."""
    return s.offload_embedding and O.stack(s.stack).host_levers


def unquantized_bytes(shape: ModelShape, s: Setup) -> tuple[int, int]:
    """(embedding + lm_head + norms at their 16-bit load dtype, extra bytes of fp32 upcasts) on the GPU.

    bitsandbytes never quantizes the embedding or lm_head. The hf stack's prepare_model_for_kbit_training then
    upcasts every non-quantized weight to fp32, doubling them: about 2 GiB on Llama-3-8B. qlorafit keeps them 16-bit.
    """
    wb = _act_bytes(s)
    e = shape.embedding_params()
    if shape.tie_word_embeddings:
        # one matrix serves the lookup and the logits: offload_embedding alone cannot move it (the logits need it);
        # offload_lm_head streams the logits from host RAM and moves the lookup there too, so the matrix leaves
        matrices = 0 if s.offload_lm_head else e
    else:
        matrices = (0 if embedding_offloaded(s) else e) + (0 if s.offload_lm_head else e)
    norms = shape.norm_params()
    base = (matrices + norms) * wb
    upcast = (matrices + norms) * (4 - wb) if O.stack(s.stack).fp32_upcast else 0
    return base, upcast


def expert_weight_bytes(shape: ModelShape, s: Setup) -> tuple[int, int]:
    """(routed experts + routers at their load dtype, extra bytes of the hf stack's fp32 upcast) on the GPU.

    transformers 5 stores a MoE layer's experts as fused 3-D parameters (experts.gate_up_proj, experts.down_proj),
    and bitsandbytes 0.50 quantizes only nn.Linear modules: the experts load 16-bit, checked on CPU
    (tests/test_moe.py) and on the H200 (benchmarks/results/holdout-h200-2026-11-29.jsonl, expert_params). On
    Qwen3-30B-A3B that is 54 GiB of the 57 GiB of weights. prepare_model_for_kbit_training (hf stack) then upcasts
    every non-4-bit parameter to fp32, the experts included.
    """
    if not shape.is_moe:
        return 0, 0
    wb = _act_bytes(s)
    n = shape.expert_params() + shape.router_params()
    return n * wb, n * (4 - wb) if O.stack(s.stack).fp32_upcast else 0


def lora_params(shape: ModelShape, s: Setup) -> int:
    targets = s.targets(shape)
    return sum(count * sum(s.lora_r * (a + b) for t, (a, b) in shapes.items() if t in targets)
               for count, shapes, _ in shape.layer_kinds())


def layer_activation_bytes_per_token(shape: ModelShape, s: Setup, kind: str | None = None) -> float:
    """Bytes one decoder layer saves for backward, per token, when nothing is checkpointed.

    Derived from what each op saves for backward (a = 2 bytes in bf16/fp16, 4 in fp32), checked on the GPU runs:
      RMSNorm computes in fp32 and saves its fp32 input (4h); the weight is frozen, so its output is not saved
      the 4-bit base matmul (bitsandbytes gemm_4bit) saves no input: it only needs the packed weight in backward
      attention: rotated q (a*qd), rotated k and v (a*2*kvd), sdpa's output (a*qd) and logsumexp (fp32 per head);
        RoPE multiplies by constant cos/sin, so the unrotated q and k are not kept
      MLP: gate and up outputs and act(gate) (3 x a*i); down_proj's input is kept only by its LoRA
      LoRA: lora_A keeps its input: with dropout a per-module dropped copy (a) and mask (1 byte) of the module's
        input; without dropout the input itself, shared by modules that read the same tensor (q/k/v, gate/up)
      q/k norms (Qwen3, Gemma 3) save their fp32 inputs: 4 x (q_dim + kv_dim) more
      fused qkv_proj (Phi-3/4): v stays a view of the fused output, which keeps a x (q_dim + kv_dim) more alive
      MoE layer: each token's top-k experts each keep their gate/up outputs and act(gate) (3 x a x expert width)
        and their output, kept by the routing-weight product (a x h); the router keeps its fp32 softmax (4 x
        experts); a shared expert keeps what a dense MLP of its width does; frozen expert weights keep no input
    On a model with several kinds of layer (dense and MoE) this is the mean over its layers; `kind` picks one kind.
    """
    kinds = shape.layer_kinds()
    if kind is not None:
        kinds = [k for k in kinds if k[2] == kind]
    layers = sum(count for count, _, _ in kinds)
    return sum(count * _layer_bytes(shape, s, shapes, k) for count, shapes, k in kinds) / layers


def _layer_bytes(shape: ModelShape, s: Setup, lin: dict, kind: str) -> float:
    h, i, qd, kvd = shape.hidden_size, shape.intermediate_size, shape.q_dim, shape.kv_dim
    a = _act_bytes(s)
    # liger's kernels (graphed layers, where installed): its RMSNorm keeps its input in the compute dtype and one fp32
    # rstd per row, not the fp32 input; its SwiGLU keeps gate and up and recomputes act(gate) in backward. Measured
    # without them, 1 x 2,048 with checkpointing off was estimated 16.06 GiB against 12.34 (session 9, call 3)
    fused = s.fused_layers(shape)
    norms = shape.norms_per_layer * ((a * h + 4) if fused else 4 * h) + (4 * (qd + kvd) if shape.qk_norm else 0)
    attn = a * (2 * qd + 2 * kvd) + 4 * shape.num_heads
    if shape.fused and "qkv_proj" in lin:
        # v is a view of the fused qkv_proj output, and sdpa keeps v: the whole (q + k + v) buffer stays alive
        # beside the rotated q and k
        attn += a * (qd + kvd)
    # on the hf stack the fp32 norm weights make the MLP input fp32 and bitsandbytes casts its output back to the
    # input's dtype, so gate, up and act(gate) are fp32 (4 bytes each)
    tiled = _mlp_tiled(s)
    # tiled: the MLP keeps only its input (the slices' checkpoints hold views of it); its intermediates and its LoRA
    # copies live one slice at a time (mlp_tile_transient_bytes)
    mlp = a * h if tiled else _residual_bytes(s) * (2 if fused and not shape.is_moe else 3) * i
    if kind == "moe":
        k, mi, si = shape.experts_per_token, shape.moe_intermediate_size, shape.shared_intermediate_size
        mlp = k * (_residual_bytes(s) * 3 * mi + a * h) + 4 * shape.num_experts + _residual_bytes(s) * 3 * si
    lora = 0.0
    shared_inputs_seen = set()
    for t in s.targets(shape):
        if t not in lin or (tiled and t in MLP_NAMES):
            continue
        fan_in = lin[t][0]
        if s.lora_dropout > 0:
            lora += (a + 1) * fan_in
        else:
            source = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "qkv_proj": "attn_in",
                      "gate_proj": "mlp_in", "up_proj": "mlp_in", "gate_up_proj": "mlp_in"}.get(t, t)
            if source not in shared_inputs_seen:
                shared_inputs_seen.add(source)
                lora += a * fan_in
        lora += a * s.lora_r  # lora_A's output, kept by lora_B
    return norms + attn + mlp + lora


def layer_backward_transient_bytes_per_token(shape: ModelShape, s: Setup) -> float:
    """Gradients alive inside one layer's backward, per token: the MLP's gate/up/act gradients (3 x a*i) on top of
    the residual gradient and the layer input's gradient (2 x a*h)."""
    a = _act_bytes(s)
    # tiled: the backward of each slice of the MLP input materializes a full-length (B, T, h) gradient that is
    # accumulated into the input's gradient: two more full-length tensors in flight
    mlp = 2 * a * shape.hidden_size if _mlp_tiled(s) else _residual_bytes(s) * 3 * shape.intermediate_size
    if shape.is_moe:  # a MoE layer's backward: per routed copy the gate/up/act gradients and two (h) gradients
        k, mi = shape.experts_per_token, shape.moe_intermediate_size
        moe = k * (_residual_bytes(s) * 3 * mi + 2 * a * shape.hidden_size)
        mlp = max(mlp if shape.dense_layers else 0, moe)
    return mlp + a * 2 * shape.hidden_size


def mlp_tile_transient_bytes(shape: ModelShape, s: Setup) -> int:
    """With tiling, one slice's MLP rebuilt in backward: its intermediates, their gradients and its LoRA copies."""
    if not _mlp_tiled(s):
        return 0
    a, i, h = _act_bytes(s), shape.intermediate_size, shape.hidden_size
    per_token = 6 * a * i + 2 * a * h
    lin = shape.linear_shapes()
    per_token += sum((a + 1) * lin[t][0] for t in s.targets(shape) if t in MLP_NAMES and t in lin)
    return s.batch_size * min(s.mlp_tile_tokens, s.seq_len) * per_token


def _mlp_tiled(s: Setup) -> bool:
    return 0 < s.mlp_tile_tokens < s.seq_len


def checkpoint_bytes_per_token(shape: ModelShape, s: Setup) -> int:
    """What checkpointing keeps per layer and token: the layer's input. On the hf stack the residual stream is fp32
    (prepare_model_for_kbit_training's fp32 embedding and norms promote it), so 4 bytes, not 2."""
    return _residual_bytes(s) * shape.hidden_size


def _act_bytes(s: Setup) -> int:
    return O.dtype(s.compute_dtype).bytes


def _residual_bytes(s: Setup) -> int:
    """Bytes per value of the residual stream (and the MLP inputs): fp32 on a stack that upcasts the norms."""
    return 4 if O.stack(s.stack).fp32_upcast else _act_bytes(s)


def attention_scores_bytes(shape: ModelShape, s: Setup) -> int:
    """Eager attention materializes softmax(QK^T) per layer: heads x T x T, in the compute dtype and fp32 softmax."""
    if not O.attention(s.attn_impl).materializes_scores:
        return 0
    t = s.seq_len
    return s.batch_size * shape.num_heads * t * t * (2 + 4)


def logits_bytes(shape: ModelShape, s: Setup, tokens: int) -> tuple[int, int]:
    """(forward, backward) high points of the logits and the loss, in bytes, for `tokens` tokens.

    standard: bf16 logits (2V), their fp32 copy (4V) and log_softmax's saved output (4V) in forward; in backward the
      saved log_softmax, the fp32 gradient and its input gradient (3 x 4V). qlorafit's own standard path also slices
      the logits to drop the last position, one more bf16 copy (2V) in forward.
    chunked: qlorafit.runtime.loss computes each chunk's fp32 logits and their gradient in forward (about 8 C V bytes) and
      keeps only the (N, h) gradient of the hidden states, so backward adds nothing vocabulary-sized.
    fused (liger): the same in its own chunks.
    The hf stack adds the bf16 copy of its fp32 lm_head that autocast makes and linear saves (V x h x 2).
    """
    v = shape.vocab_size
    if s.offload_lm_head:  # whatever loss_impl says, the head in host RAM is only read by the streamed loss
        fwd, bwd = streamed_loss_bytes(shape, s, tokens), 0
    elif not (loss := O.loss(s.loss_impl)).chunked:
        # qlorafit's own standard path also slices the logits to drop the last position: one more bf16 copy
        fwd = tokens * v * (loss.fwd_bytes_per_logit + (2 if O.stack(s.stack).own_runtime else 0))
        bwd = tokens * v * loss.bwd_bytes_per_logit
        if shape.final_softcap:  # final logit softcapping (Gemma 2): tanh keeps its bf16 output for backward
            fwd, bwd = fwd + tokens * v * 2, bwd + tokens * v * 2
    else:
        chunk = loss_chunk_tokens(v, tokens)
        fwd, bwd = chunk * v * loss.fwd_bytes_per_logit, chunk * v * loss.bwd_bytes_per_logit
    if O.stack(s.stack).fp32_upcast:
        fwd += shape.embedding_params() * 2
        bwd += shape.embedding_params() * 2
    return fwd, bwd


def loss_chunk_tokens(vocab_size: int, tokens: int) -> int:
    """Tokens per chunk of qlorafit's chunked loss: the most whose backward stays under LOSS_CHUNK_TARGET_BYTES."""
    return max(1, min(tokens, LOSS_CHUNK_TARGET_BYTES // (CHUNK_SIZING_BYTES_PER_LOGIT * vocab_size)))


def lm_head_slice_rows(vocab_size: int, hidden_size: int) -> int:
    """Vocabulary rows per slice of the streamed lm_head (offload_lm_head): LM_HEAD_SLICE_BYTES of 16-bit weight.

    >>> lm_head_slice_rows(128256, 4096)   # Llama-3-8B: 16 slices of 64 MiB, the last one shorter
    8192
    """
    return max(1, min(vocab_size, LM_HEAD_SLICE_BYTES // (2 * hidden_size)))


def streamed_loss_bytes(shape: ModelShape, s: Setup, tokens: int) -> int:
    """Device bytes of the streamed loss (offload_lm_head) beyond the (N, h) hidden states and their gradient.

    Two slice buffers (the one in use and the next, arriving on a side stream), the online-softmax state kept for
    all N tokens (fp32 accumulator N x h, running max, sum and target logit N x 4 each), the target rows W[y]
    (N x h, 16-bit) and one tile of a slice's logits for C tokens (about 8 C x rows bytes; 12 with a softcap).
    """
    h, wb = shape.hidden_size, _act_bytes(s)
    rows = lm_head_slice_rows(shape.vocab_size, h)
    chunk = loss_chunk_tokens(rows, tokens)
    tile = chunk * rows * (12 if shape.final_softcap else 8)
    return 2 * rows * h * wb + tokens * (h * 4 + 3 * 4 + h * wb) + tile


def dequant_transient_bytes(shape: ModelShape, s: Setup) -> int:
    """The largest weight dequantized to the compute dtype for one matmul (forward and backward)."""
    if O.quant(s.quant).bits == 16:
        return 0
    return max(a * b for _, shapes, _ in shape.layer_kinds() for a, b in shapes.values()) * 2


# --- the whole estimate -------------------------------------------------------------------------------------------

def estimate(shape: ModelShape, s: Setup, context_bytes: int | None = None) -> Estimate:
    """Predict the peak GPU memory (allocator reserved + CUDA context) of one training step of `s` on `shape`.

    context_bytes: this machine's CUDA context (`qlorafit estimate --measure-context`); None: the H200 figure."""
    validate(shape, s)
    asked = s
    if s.graphs() and O.graph_bucket(s.seq_len) != s.seq_len:  # memory decision: graphed micro-batches are padded
        s = replace(s, seq_len=O.graph_bucket(s.seq_len), cuda_graphs="on")  # to the bucket: sized at that length
    tokens = s.batch_size * s.seq_len
    a = _act_bytes(s)
    h = shape.hidden_size
    ck = O.checkpointing(s.grad_checkpointing)

    qweights, qconsts = base_weight_bytes(shape, s)
    unq, upcast = unquantized_bytes(shape, s)
    experts, experts_upcast = expert_weight_bytes(shape, s)
    upcast += experts_upcast
    n_lora = lora_params(shape, s)
    lora_w = n_lora * O.dtype(s.lora_dtype).bytes
    lora_g = n_lora * O.dtype(s.lora_dtype).bytes
    # paged optimizers keep states in CUDA managed memory: resident on the GPU while it has room, so counted here
    opt = O.optimizer(s.optimizer).state_bytes(n_lora)
    static = qweights + qconsts + unq + upcast + lora_w + experts

    per_layer_tok = layer_activation_bytes_per_token(shape, s)
    layer_acts = int(per_layer_tok * tokens) + attention_scores_bytes(shape, s)
    # the one layer rebuilt in backward under checkpointing: the largest kind (a MoE layer's routed copies)
    kinds = shape.layer_kinds()
    biggest = per_layer_tok if len(kinds) == 1 else max(layer_activation_bytes_per_token(shape, s, k)
                                                        for _, _, k in kinds)
    if not ck.recompute:
        saved = shape.num_layers * layer_acts
        recompute = 0
    else:
        # each layer's input (B, T, h); with offload it sits in pinned host RAM instead
        # offload keeps two layer inputs on the GPU in backward: the one being recomputed and the next, prefetched
        layers_on_gpu = 2 if ck.to_host else shape.num_layers
        saved = layers_on_gpu * tokens * checkpoint_bytes_per_token(shape, s)
        recompute = int(biggest * tokens) + attention_scores_bytes(shape, s)
    # the head: the final norm's fp32 input and output, and for chunked/fused/streamed the (N, h) hidden copy and
    # its gradient
    final_hidden = tokens * h * (4 + a + (2 * a if O.loss(s.loss_impl).chunked or s.offload_lm_head else 0))
    logits_fwd, logits_bwd = logits_bytes(shape, s, tokens)
    dequant = dequant_transient_bytes(shape, s)
    grad_stream = int(layer_backward_transient_bytes_per_token(shape, s) * tokens) + mlp_tile_transient_bytes(shape, s)

    graphs = GRAPH_POOL_EXTRA_BYTES if s.graphs() else 0  # held from the first capture on, in every phase
    fwd = static + lora_g + opt + saved + final_hidden + logits_fwd + dequant + graphs
    bwd_head = static + lora_g + opt + saved + final_hidden + logits_bwd + dequant + graphs
    bwd_layers = static + lora_g + opt + saved + recompute + grad_stream + dequant + graphs
    optim_step = static + lora_g + opt + n_lora * 4 + graphs  # fused Adam temporaries ~ one fp32 copy of the params
    # loading: the offloaded embedding / lm_head load straight into host RAM (qlorafit.runtime.model.host_ram_modules), so
    # they never pass through the GPU; LoRA is attached before the host-RAM levers run
    load = qweights + qconsts + unq + upcast + lora_w + experts
    # allocator slack: a share of the vocabulary-sized and of the activation-sized transients held at each high point
    exp = s.expandable()
    off = ck.to_host
    compiled = s.compile and not s.mlp_tile_tokens and not s.graphs()  # tiled layers, and graphs, run eager layers
    slack_fwd = _slack(logits_fwd, saved + final_hidden, exp, off, compiled)
    slack_head = _slack(logits_bwd, saved + final_hidden, exp, off, compiled)
    slack_layers = _slack(0, saved + recompute + grad_stream, exp, off, compiled)
    head_is_peak = bwd_head + slack_head >= bwd_layers + slack_layers
    phases_alloc = {"load": load, "forward": fwd, "backward": bwd_head if head_is_peak else bwd_layers,
                    "optimizer": optim_step}
    slack = {"load": _slack(0, 0, exp), "forward": slack_fwd, "backward": slack_head if head_is_peak else slack_layers,
             "optimizer": _slack(0, 0, exp)}
    context = (CUDA_CONTEXT_BYTES if context_bytes is None else context_bytes) + (OFFLOAD_CONTEXT_BYTES if off else 0)
    phases = {k: v + slack[k] + context for k, v in phases_alloc.items()}
    peak_phase = max(phases, key=phases.get)

    # the breakdown at the peak phase
    parts = [
        Component("quantized weights", qweights, f"{s.quant} linear weights of {shape.num_layers} layers"),
        Component("quantization constants", qconsts, "absmax per block" + (" (double quant)" if s.double_quant else "")),
        Component("MoE experts, 16-bit", experts, f"{shape.num_experts} experts x {shape.moe_layers} layers + "
                  f"routers, not quantized: transformers 5 fuses them into 3-D parameters bitsandbytes leaves alone"),
        Component("embeddings, lm_head, norms", unq, "kept 16-bit" + _host_note(shape, s)),
        Component("fp32 upcast", upcast, "prepare_model_for_kbit_training's fp32 copies"
                  + (", the experts included" if experts_upcast else "")),
        Component("LoRA weights", lora_w, f"{n_lora:,} params, r={s.lora_r}, {s.lora_dtype}"),
    ]
    if peak_phase != "load":
        parts += [
            Component("LoRA gradients", lora_g, s.lora_dtype),
            Component("optimizer states", opt, s.optimizer),
        ]
    if peak_phase in ("forward", "backward"):
        at_head = peak_phase == "forward" or head_is_peak
        parts += [
            Component("saved activations", saved, ck.note + ("; liger-kernel's RMSNorm and SwiGLU in the graphed "
                                                             "layers" if s.fused_layers(shape) else "")),
            Component("dequantized weight", dequant, "largest weight dequantized for one matmul"),
        ]
        if at_head:
            parts += [
                Component("final norm", final_hidden, "last hidden states, fp32 norm input"),
                Component("logits and loss", logits_fwd if peak_phase == "forward" else logits_bwd,
                          f"{'streamed' if s.offload_lm_head else s.loss_impl} loss, vocab {shape.vocab_size:,}"),
            ]
        else:
            parts += [
                Component("layer recompute", recompute, "one layer's activations rebuilt in backward"),
                Component("gradient stream", grad_stream, "hidden-state gradients between layers"),
            ]
    if peak_phase == "optimizer":
        parts.append(Component("optimizer temporaries", n_lora * 4, "one fp32 copy of the trainable params"))
    if peak_phase != "load":
        parts.append(Component("CUDA graph pool", graphs, "train.cuda_graphs: the graphs' own memory, not shared"))
    parts += [
        Component("allocator overhead", phases[peak_phase] - context - phases_alloc[peak_phase],
                  "reserved but not allocated"),
        Component("CUDA context", context, "context, cuBLAS handles and workspace" + (
            " (H200 figure; `qlorafit estimate --measure-context` reads yours)" if context_bytes is None else
            " (as measured here)") + (", + offload stream and pinned buffers" if off else "")),
    ]
    parts = [p for p in parts if p.bytes]
    host = 0
    if ck.to_host:
        host += shape.num_layers * tokens * h * a
    if shape.tie_word_embeddings:  # one matrix: it moves with the head, never with the embedding alone
        host += shape.embedding_params() * 2 if s.offload_lm_head else 0
    else:
        host += shape.embedding_params() * 2 * (embedding_offloaded(s) + s.offload_lm_head)
    return Estimate(
        model=shape.name, setup=asked, components=tuple(parts), phases=phases, peak_phase=peak_phase,
        peak_bytes=sum(p.bytes for p in parts), host_bytes=host, trainable_params=n_lora, tokens_per_micro_batch=tokens,
    )


def _host_note(shape: ModelShape, s: Setup) -> str:
    """What of the 16-bit matrices sits in host RAM, for the breakdown's note."""
    tied = shape.tie_word_embeddings
    moved = [name for name, on in (("embedding", embedding_offloaded(s) and not tied or s.offload_lm_head and tied),
                                   ("lm_head", s.offload_lm_head)) if on]
    return f", {' and '.join(moved)}{' (tied)' if tied and moved else ''} in host RAM" if moved else ""


def _slack(logits_bytes: int, activation_bytes: int, expandable: bool, offload: bool = False,
           compiled: bool = False) -> int:
    if offload:
        acts = SLACK_ACTIVATIONS_OFFLOAD_COMPILED if compiled else SLACK_ACTIVATIONS_OFFLOAD
    else:
        acts = SLACK_ACTIVATIONS[expandable]
    return int(SLACK_LOGITS[expandable] * logits_bytes + acts * activation_bytes) + ALLOCATOR_FIXED_BYTES

