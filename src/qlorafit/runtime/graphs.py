"""Each micro-batch's forward and backward as one CUDA graph (train.cuda_graphs): the host out of the step.

Short micro-batches are host-bound: at 1 x 2,048 tokens on Llama-3-8B a step took 329 ms for 185 ms of GPU work and
6,113 kernel launches, each with Python around it (benchmarks/host_profile.py). A CUDA graph replays all of a
micro-batch's kernels with one launch. The experiment this module is built from (benchmarks/versus.py
qlorafit-wholegraph, H200, session 7) ran 1 x 2,048 at 7,870 tok/s with the GPU busy 253 of 263 ms, and 2 x 4 x 512 at
7,543 tok/s, 3.0x the compiled default, for about 0.5 GiB more (benchmarks/README.md, seventh session).

How a micro-batch runs here:
- It is right-padded to a bucket length (a multiple of BUCKET_TOKENS), so that few shapes recur. Padding takes no
  loss, and under causal attention right padding cannot change a real token's output, so no attention mask is passed
  (building one costs a host check).
- The embedding runs before the graph (it may sit in host RAM); the graph starts at its output.
- The loss is the chunked loss over every position with ignored labels masked: dropping them first would need
  nonzero(), a host sync that a capture cannot hold. The step's divisor is a device tensor, filled before each replay.
- A shape is captured on its third sight: two eager passes first (cuBLAS and attention set themselves up there), then
  one pass on a side stream and the capture. The layers are not torch.compile'd when graphs are on: dynamo recompiled
  a compiled layer inside the capture, which invalidated it (session 7).
- The gradient tensors stay allocated (zero_grad fills zeros), so the captured backward accumulates into them. If
  anything replaces them, or the guard changes the setup after an OOM, every graph is dropped and recaptured.
- All graphs share one memory pool: a micro-batch's transient memory is held once, not once per shape.
- Each new graph is replayed once on the inputs it was captured with and compared with the same pass run eagerly
  (loss and gradients); if they disagree, graphs are off for the run, with a warning: never a silently wrong update.
- A capture that fails for another reason than memory makes that shape eager, with one warning; an OOM in a capture
  goes to the guard like any other.
"""

import warnings
from collections import Counter
from dataclasses import dataclass

import torch

from qlorafit.core import options as O
from qlorafit.runtime.collate import PackedRow, collate
from qlorafit.runtime.data import IGNORE
from qlorafit.runtime.model import resolve_compute_dtype

BUCKET_TOKENS = 256  # lengths are rounded up to this: at most 1/8 wasted at 2,048 tokens, one graph per 256 of length
MAX_GRAPHS = 16      # shapes beyond this many run eagerly (each capture costs seconds; the pool holds the largest)
WARM_PASSES = 2      # eager passes of a shape before it is captured
AGREE = 1e-2         # a new graph's replay and the eager pass agree this closely (relative), or graphs are off; the
# same kernels on the same inputs differ only by the order of atomic adds (well under this)


def unsupported(cfg, device: torch.device, distributed: bool) -> str | None:
    """Why train.cuda_graphs cannot run with this configuration, or None when it can."""
    t = cfg.train
    for bad, why in (
        (device.type != "cuda", "it needs a CUDA device"),
        (distributed, "it runs in a single process only (the ranks' collectives are not captured)"),
        (O.checkpointing(t.grad_checkpointing).to_host, "offloaded checkpointing copies to host RAM, which a capture "
                                                        "cannot hold (from 8,192 tokens per micro-batch the step is "
                                                        "GPU-bound anyway)"),
        (cfg.model.offload_lm_head, "model.offload_lm_head streams the head through the host"),
        (O.loss(t.loss_impl).builder is not None or not O.loss(t.loss_impl).chunked,
         "it needs train.loss_impl: chunked"),
        (cfg.lora.dropout > 0, "it needs lora.dropout: 0 (the recompute's dropout masks are not captured)"),
        (device.type == "cuda" and _compute_dtype(cfg, device) == torch.float16,
         "fp16's loss scaling is not captured (bf16 only)"),
        (cfg.data.packing, "packed rows carry sample boundaries that change every step"),
        (t.mlp_tile_tokens > 0, "not with train.mlp_tile_tokens (not measured together)"),
    ):
        if bad:
            return why
    return None


def _compute_dtype(cfg, device: torch.device) -> torch.dtype:
    with warnings.catch_warnings():  # the load says it once, where it happens
        warnings.simplefilter("ignore")
        return resolve_compute_dtype(cfg.model.compute_dtype, device)


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

    def reset(self) -> None:
        """Drop every graph and its memory (after an OOM recovery, or when the gradient tensors were replaced)."""
        self.graphs.clear()
        self.seen.clear()
        self.grads, self.pool = None, None

    def run(self, ctx, units: list, denom: float, step_fn) -> torch.Tensor | None:
        """This micro-batch's loss sum (detached) after its forward and backward, or None: run it eagerly."""
        if self.disabled or isinstance(units[0], PackedRow) or O.checkpointing(ctx.guard.checkpointing).to_host:
            return None
        if any(p.grad is None for p in self.params):
            return None  # the first backward makes them; a graph needs them to accumulate into
        if self.grads is not None and any(p.grad is not g for p, g in zip(self.params, self.grads)):
            self.reset()  # replaced (set to None, then made anew): the graphs would write into the old tensors
        embeds, labels = self._inputs(ctx, units)
        key = tuple(embeds.shape)
        if key not in self.graphs:
            self.seen[key] += 1
            if self.seen[key] <= WARM_PASSES or len(self.graphs) >= MAX_GRAPHS:
                return None
            self.graphs[key] = self._capture(ctx, key, embeds, labels, denom, step_fn)
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
        more = -(-b["input_ids"].shape[1] // BUCKET_TOKENS) * BUCKET_TOKENS - b["input_ids"].shape[1]
        ids = torch.nn.functional.pad(b["input_ids"], (0, more), value=ctx.pad_id)
        labels = torch.nn.functional.pad(b["labels"], (0, more), value=IGNORE)
        with torch.no_grad():
            embeds = self.embed(ids.to(self.embed.weight.device))  # the host-RAM embedding takes host ids
        return embeds.detach().to(ctx.device), labels.pin_memory() if ctx.device.type == "cuda" else labels

    def _capture(self, ctx, key: tuple, embeds, labels, denom: float, step_fn) -> _Graph | None:
        static = _Graph(None, embeds.detach().clone(), labels.to(ctx.device),
                        torch.tensor(float(denom), device=ctx.device), None)
        saved = [p.grad.clone() for p in self.params]  # the warm-up pass below adds to the gradients: undone after

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
                          stacklevel=2)
            return None
        agree = self._replay_matches_eager(static, once)
        self._restore(saved)
        if agree is not None:
            warnings.warn(f"train.cuda_graphs: the captured pass disagrees with the eager one ({agree}); graphs are "
                          f"off for this run", stacklevel=2)
            self.disabled = True
            return None
        self.grads = [p.grad for p in self.params]
        self.captures += 1
        return static

    def _replay_matches_eager(self, g: _Graph, once) -> str | None:
        """Never train silently on a wrong graph: replay it once on the inputs it was captured with, run the same pass
        eagerly, and compare the loss and the gradients each adds. The graph holds the very kernels the eager pass
        launches, so they agree to rounding; None when they do, else what differed."""
        with torch.no_grad():
            for p in self.params:
                p.grad.zero_()  # in place: the graph accumulates into these tensors
        g.graph.replay()
        replayed = [p.grad.clone() for p in self.params], float(g.loss)
        with torch.no_grad():
            for p in self.params:
                p.grad.zero_()
        eager = float(once())
        num = sum(float((p.grad - r).float().norm()) ** 2 for p, r in zip(self.params, replayed[0])) ** 0.5
        den = sum(float(p.grad.float().norm()) ** 2 for p in self.params) ** 0.5
        if abs(replayed[1] - eager) > AGREE * max(abs(eager), 1e-12) or num > AGREE * max(den, 1e-30):
            return f"loss {replayed[1]:.6g} against {eager:.6g}, gradients {num / max(den, 1e-30):.1e} apart"
        return None

    def _restore(self, saved: list) -> None:
        with torch.no_grad():
            for p, s in zip(self.params, saved):
                p.grad.copy_(s)


def _cuda_capture(fn, pool):
    """(graph, its output, the shared pool): one pass of fn on a side stream, as capture wants, then the capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    # memory decision: hand back what the eager passes left cached (the side stream's blocks sit in their own pool)
    # before the graph's private pool is filled, so the two are not held at once
    torch.cuda.empty_cache()
    pool = pool if pool is not None else torch.cuda.graph_pool_handle()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        out = fn()
    return graph, out, pool
