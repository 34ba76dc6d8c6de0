"""Each micro-batch's forward and backward as one CUDA graph (train.cuda_graphs): the host out of the step.

Short micro-batches are host-bound: at 1 x 2,048 tokens on Llama-3-8B a step took 329 ms for 185 ms of GPU work and
6,113 kernel launches, each with Python around it (benchmarks/host_profile.py). A CUDA graph replays all of a
micro-batch's kernels with one launch. The experiment this module is built from (benchmarks/versus.py
qlorafit-wholegraph, H200, session 7) ran 1 x 2,048 at 7,870 tok/s with the GPU busy 253 of 263 ms, and 2 x 4 x 512 at
7,543 tok/s, 3.0x the compiled default, for about 0.5 GiB more (benchmarks/README.md, seventh session).

How a micro-batch runs here:
- It is right-padded to a bucket length (options.graph_bucket), so that few shapes recur. Padding takes no
  loss, and under causal attention right padding cannot change a real token's output, so no attention mask is passed
  (building one costs a host check).
- The embedding runs before the graph (it may sit in host RAM); the graph starts at its output.
- The loss is the chunked loss over every position with ignored labels masked: dropping them first would need
  nonzero(), a host sync that a capture cannot hold. The step's divisor is a device tensor, filled before each replay.
- A shape is captured on its second sight: the graph's own pass runs eagerly first (cuBLAS and attention set
  themselves up there), then again as the reference, then one pass on a side stream, and the capture; it replays from
  the third sight. The layers are not torch.compile'd when graphs are on, liger-kernel fuses their norms, RoPE and
  SwiGLU instead: compiled layers failed inside the capture in session 8 ("operation failed due to a previous error
  during capture": transformers' mask path changed while capturing, and Dynamo recompiled inside the capture); with
  causal_attention they capture, but ran 4 % slower than liger's (session 9).
- The gradient tensors stay allocated (zero_grad fills zeros), so the captured backward accumulates into them. If
  anything replaces them, or the guard changes the setup after an OOM, every graph is dropped and recaptured.
- Attention is causal with no mask tensor (causal_attention): transformers builds an explicit causal mask while a
  stream is capturing, which made cuDNN's attention 2.8x slower inside the graph than in the eager pass (19.5 + 13.2
  ms per step at 1 x 2,048 on Llama-3-8B, against 6.9 + 5.1 for TRL's eager step; session 9,
  benchmarks/capture_probe.py), and changed the path a compiled layer had traced.
- All graphs share one memory pool: a micro-batch's transient memory is held once, not once per shape.
- Each new graph is replayed once on the inputs it was captured with and compared with the eager pass just before it
  on the same inputs (loss and gradients); if they disagree, graphs are off for the run, with a warning: never a
  silently wrong update.
- A capture that fails for another reason than memory makes that shape eager, with one warning; an OOM in a capture
  goes to the guard like any other.
"""

import contextlib
import warnings
from collections import Counter
from dataclasses import dataclass

import torch

from qlorafit.core import options as O
from qlorafit.runtime.collate import PackedRow, collate
from qlorafit.runtime.data import IGNORE
from qlorafit.runtime.model import resolve_compute_dtype

MAX_GRAPHS = 16      # shapes beyond this many run eagerly (each capture costs seconds; the pool holds the largest)
WARM_PASSES = 2      # eager passes of a shape; the last is the reference its new graph is checked against
# A new graph's replay and the eager pass agree this closely (relative), or graphs are off for the run. A wrong graph
# (a stale or doubled accumulation, inputs not reloaded, another computation) is off by order 1. Rounding is not zero:
# under capture cuBLAS may pick other algorithms (split-K), and bf16 differences grow with depth. Measured on an H200
# (session 8): a 4-layer model 3e-3 for the gradients (eager against itself 2e-3), Llama-3-8B (32 layers) 6e-2 for the
# gradients and 6e-5 for the loss; so the gradients' bound sits between the rounding and order 1.
AGREE_LOSS = 1e-3
AGREE_GRADS = 0.25


def unsupported(cfg, device: torch.device, distributed: bool) -> str | None:
    """Why train.cuda_graphs cannot run with this configuration, or None when it can: the device's and the ranks'
    reasons, then the setup's own (qlorafit.core.options.graphs_blocker, which the estimator reads too)."""
    t = cfg.train
    if device.type != "cuda":
        return "it needs a CUDA device"
    if distributed:
        return "it runs in a single process only (the ranks' collectives are not captured)"
    return O.graphs_blocker(dropout=cfg.lora.dropout, loss_impl=t.loss_impl, checkpointing_name=t.grad_checkpointing,
                            offload_lm_head=cfg.model.offload_lm_head, packing=cfg.data.packing,
                            mlp_tile_tokens=t.mlp_tile_tokens,
                            compute_dtype="fp16" if _compute_dtype(cfg, device) == torch.float16 else "bf16")


def _compute_dtype(cfg, device: torch.device) -> torch.dtype:
    with warnings.catch_warnings():  # the load says it once, where it happens
        warnings.simplefilter("ignore")
        return resolve_compute_dtype(cfg.model.compute_dtype, device)


CAUSAL = "qlorafit_causal_sdpa"  # the attention implementation the graphed pass runs under (causal_attention)


def _register_causal() -> None:
    """CAUSAL in transformers' attention registries: PyTorch's SDPA as transformers calls it, and a mask function
    that makes no mask (None), so every layer takes SDPA's is_causal path."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface
    AttentionInterface.register(CAUSAL, sdpa_attention_forward)
    AttentionMaskInterface.register(CAUSAL, lambda *args, **kwargs: None)


def causal_only(config, length: int | None = None) -> bool:
    """Whether every attention layer of this (text) config is plain causal attention on rows of `length` tokens: a
    no-mask pass computes the same thing. A sliding window that reaches past the row cannot bind (every earlier
    token is inside it); a shorter one needs its mask. Other implementations than SDPA are left as they are."""
    spec = O.attention_of_hf(getattr(config, "_attn_implementation", None))
    if spec is None or not spec.causal_kernel:
        return False
    window = getattr(config, "sliding_window", None)
    binds = window is not None and (length is None or window <= length)
    types = getattr(config, "layer_types", None)
    if types is not None:
        return all(t == "full_attention" or (t == "sliding_attention" and not binds) for t in types)
    return getattr(config, "use_sliding_window", True) is False or not binds


@contextlib.contextmanager
def causal_attention(model, length: int | None = None):
    """The graphed pass's attention: SDPA with is_causal and no mask tensor, where the model's layers are all plain
    causal attention on rows of `length` tokens (causal_only); otherwise the model's own. The micro-batch is
    right-padded, so no padding mask is needed. Speed decision: while a stream captures, transformers (5.17) materializes the causal mask instead of
    passing is_causal, and cuDNN's masked attention took 2.8x the time of its causal kernel (capture_probe.py). The
    forward and the backward (with its checkpoint recompute) both run inside this context."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config()
    if not causal_only(config, length):
        yield
        return
    _register_causal()
    own, config._attn_implementation = config._attn_implementation, CAUSAL
    try:
        yield
    finally:
        config._attn_implementation = own


@dataclass
class _Graph:
    graph: object         # torch.cuda.CUDAGraph, or the tests' stand-in
    embeds: torch.Tensor  # static inputs, copied into before each replay
    labels: torch.Tensor
    denom: torch.Tensor
    loss: torch.Tensor    # the static output: this micro-batch's loss sum


class MicroBatchGraphs:
    """The captured micro-batches of one run. run() replays or captures; it returns None where the eager step must
    run instead (a shape not yet warm, or one that cannot be captured)."""

    def __init__(self, model, params: list, capture=None):
        self.model, self.params = model, params
        self.embed = model.get_base_model().get_input_embeddings()
        self.graphs: dict[tuple, _Graph | None] = {}  # None: this shape runs eagerly
        self.seen: Counter = Counter()
        self.grads: list | None = None  # the tensors the captured backward accumulates into
        self.pool = None
        self.capture = capture or _cuda_capture  # tests give a CPU stand-in: (fn, pool) -> (replayable, outputs, pool)
        self.captures = 0
        self.disabled = False  # a graph disagreed with the eager pass: the run goes on eagerly
        self.checks: list[dict] = []  # each capture's check: shape, loss and gradient differences (relative)
        self._trace: dict = {}  # the memory at the capture's stages (GiB), for benchmarks/versus.py's log

    def reset(self) -> None:
        """Drop every graph and its memory (after an OOM recovery, or when the gradient tensors were replaced)."""
        self.graphs.clear()
        self.seen.clear()
        self.grads, self.pool = None, None

    def run(self, ctx, units: list, denom: float, step_fn) -> torch.Tensor | None:
        """This micro-batch's loss sum (detached) after its forward and backward, or None: run it eagerly."""
        if self.disabled or isinstance(units[0], PackedRow) or O.checkpointing(ctx.guard.checkpointing).to_host:
            return None
        if any(p.grad is None for p in self.params):  # a graph needs them to accumulate into: made now (zeros, as
            with torch.no_grad():                     # the first backward would), so the first step warms up
                for p in self.params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
        if self.grads is not None and any(p.grad is not g for p, g in zip(self.params, self.grads)):
            self.reset()  # replaced (set to None, then made anew): the graphs would write into the old tensors
        embeds, labels = self._inputs(ctx, units)
        key = tuple(embeds.shape)
        if key not in self.graphs:
            self.seen[key] += 1
            if len(self.graphs) >= MAX_GRAPHS:
                return None
            # the graph's own pass, eagerly: cuBLAS and attention set themselves up for this shape
            labels_dev = labels.to(ctx.device, non_blocking=True)
            d = torch.tensor(float(denom), device=ctx.device)
            if self.seen[key] < WARM_PASSES:
                return step_fn(embeds, labels_dev, d).detach()
            # the last warm pass is the reference the new graph is checked against, on the same inputs. Memory
            # decision: the reference runs before the capture, not after it, so that its activations and the graph's
            # pool are never held at once (checked after the capture, the peak held both: +1.0 GiB at 1 x 2,048)
            self._memory("start")
            before = [p.grad.clone() for p in self.params]
            loss = step_fn(embeds, labels_dev, d).detach()
            self._memory("after the reference pass")
            self.graphs[key] = self._capture(ctx, key, embeds, labels, denom, step_fn, (float(loss), before))
            return loss
        g = self.graphs[key]
        if g is None:
            return None
        self._load(g, embeds, labels, denom)
        g.graph.replay()
        return g.loss.clone()

    @staticmethod
    def _load(g: _Graph, embeds: torch.Tensor, labels: torch.Tensor, denom: float) -> None:
        """This micro-batch into the graph's static inputs: the replay reads them where the capture did."""
        g.embeds.copy_(embeds)
        g.labels.copy_(labels, non_blocking=True)
        g.denom.fill_(denom)

    def _inputs(self, ctx, units: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings (B, T', h) on the device, labels (B, T') on the host): right-padded to the bucket length."""
        b = collate(units, ctx.pad_id)  # right-padded to the longest, labels IGNORE there; then on to the bucket
        more = O.graph_bucket(b["input_ids"].shape[1]) - b["input_ids"].shape[1]
        ids = torch.nn.functional.pad(b["input_ids"], (0, more), value=ctx.pad_id)
        labels = torch.nn.functional.pad(b["labels"], (0, more), value=IGNORE)
        with torch.no_grad():
            embeds = self.embed(ids.to(self.embed.weight.device))  # the host-RAM embedding takes host ids
        return embeds.detach().to(ctx.device), labels.pin_memory() if ctx.device.type == "cuda" else labels

    def _capture(self, ctx, key: tuple, embeds, labels, denom: float, step_fn, reference: tuple) -> _Graph | None:
        """Capture this shape's pass; `reference` is (the eager pass's loss, the gradients from before it)."""
        static = _Graph(None, embeds.detach().clone(), labels.to(ctx.device),
                        torch.tensor(float(denom), device=ctx.device), None)
        saved = [p.grad.clone() for p in self.params]  # the passes below add to the gradients: undone after

        def once():
            return step_fn(static.embeds, static.labels, static.denom)
        try:
            static.graph, static.loss, self.pool = self.capture(once, self.pool)
        except torch.OutOfMemoryError:
            self._restore(saved)
            raise  # the guard shrinks the micro-batch; the new shape is captured in its turn
        except Exception as e:  # noqa: BLE001 - a library the capture cannot hold: this shape runs eagerly
            self._restore(saved)
            warnings.warn(f"train.cuda_graphs: the micro-batch of shape {key[:2]} could not be captured "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it runs eagerly",
                          stacklevel=3)
            return None
        self._memory("after the capture")
        eager_loss, before = reference
        eager_grads = [s - b for s, b in zip(saved, before)]  # what the eager pass added
        del before
        agree = self._replay_matches_eager(static, eager_loss, eager_grads, key)
        self._restore(saved)
        if agree is not None:
            warnings.warn(f"train.cuda_graphs: the captured pass disagrees with the eager one ({agree}); graphs are "
                          f"off for this run", stacklevel=3)
            self.disabled = True
            self.reset()  # memory decision: a run that goes on eagerly must not keep the graphs' pool
            torch.cuda.empty_cache()
            return None
        self.grads = [p.grad for p in self.params]
        self.captures += 1
        return static

    def _replay_matches_eager(self, g: _Graph, eager_loss: float, eager_grads: list, key: tuple) -> str | None:
        """Never train silently on a wrong graph: replay it once on the inputs it was captured with and compare the
        loss and the gradients it adds with what the eager pass on those inputs gave. The graph holds the kernels
        the eager pass launches, so they agree to rounding (AGREE_*); None when they do, else what differed."""
        with torch.no_grad():
            for p in self.params:
                p.grad.zero_()  # in place: the graph accumulates into these tensors
        g.graph.replay()
        replayed = float(g.loss)
        num = sum(float((p.grad - e).float().norm()) ** 2 for p, e in zip(self.params, eager_grads)) ** 0.5
        den = sum(float(e.float().norm()) ** 2 for e in eager_grads) ** 0.5
        loss_rel, grads_rel = abs(replayed - eager_loss) / max(abs(eager_loss), 1e-12), num / max(den, 1e-30)
        self.checks.append({"shape": list(key[:2]), "loss_rel": loss_rel, "grads_rel": grads_rel,
                            "memory_gib": self._trace})
        self._trace = {}
        if loss_rel > AGREE_LOSS or grads_rel > AGREE_GRADS:
            return f"loss {replayed:.6g} against {eager_loss:.6g}, gradients {grads_rel:.1e} apart"
        return None

    def _memory(self, stage: str) -> None:
        """The device's memory now (GiB: used on the card, reserved and allocated by this process's allocator); no
        host sync."""
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            free, total = torch.cuda.mem_get_info()
            self._trace[stage] = [round((total - free) / 2**30, 3), round(torch.cuda.memory_reserved() / 2**30, 3),
                                  round(torch.cuda.memory_allocated() / 2**30, 3)]

    def _restore(self, saved: list) -> None:
        with torch.no_grad():
            for p, s in zip(self.params, saved):
                p.grad.copy_(s)


def _cuda_capture(fn, pool, mode: str = "thread_local"):
    """(graph, its output, the shared pool): one pass of fn on a side stream, as capture wants, then the capture
    (`mode`: torch.cuda.graph's capture_error_mode; benchmarks/capture_probe.py tries "relaxed")."""
    # memory decision: hand back what the eager passes left cached first; the side stream allocates from its own
    # pool, so without this the reference pass's cached blocks and the side pass's were held at once (+1 GiB at
    # 1 x 2,048 on Llama-3-8B, session 8)
    torch.cuda.empty_cache()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.empty_cache()  # and the side pass's blocks, before the graph's private pool fills
    pool = pool if pool is not None else torch.cuda.graph_pool_handle()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode=mode):
        out = fn()
    return graph, out, pool
