"""The planner: the fastest configuration that fits the memory budget at the LONGEST sample, with the effective batch
kept fixed. Plain Python over the estimator and the throughput model; no torch.

Searched: micro-batch x grad_accum over the divisors of the rows per optimizer step (the batch stays the same), and
every Setup field declared `searched` (qlorafit.core.setup: checkpointing, optimizer, loss, packing, offloads, MLP
tiles, compile) over the values its PlanRequest field lists (search_axes). The rest (quant, rank, targets, attention)
is the user's choice. Every candidate is sized at micro-batch x the longest sample (max, never the mean or p99: one
long sample late in an epoch is what kills runs), and ranked by predicted tokens/s; of candidates the speed model
cannot tell apart (NEAR_TIE) the leaner goes first, and an edge-of-memory winner yields to one with HEADROOM.
"""

import itertools
from dataclasses import dataclass, field, replace

from qlorafit.core import options as O
from qlorafit.core.catalog import GPU, get_gpu
from qlorafit.core.config import Config
from qlorafit.errors import UserError
from qlorafit.core.estimate import Setup, estimate
from qlorafit.core.levers import LEVERS
from qlorafit.core.setup import apply_setup, knobs, setup_from_config
from qlorafit.core.shapes import ATTN_LINEARS, ModelShape
from qlorafit.core.sizes import fmt_gib
from qlorafit.core.throughput import Calibration, load_calibration, predict

REFERENCE_GPU = "rtx4090"      # whose speeds rank candidates when only a byte budget is known
GROUP_PAD_FRACTION = 0.05      # padding left in a micro-batch of B > 1 when samples are grouped by length
PACK_FILL = 0.97               # share of a packed row holding real tokens (the last sample rarely fits exactly)
PACK_BATCH_TOLERANCE = 0.10    # packing is tried only if whole packed rows come within 10% of the asked batch
EIGHT_BIT_PENALTY = 0.01       # rank an 8-bit optimizer 1% lower: same speed, slightly lossier states
MLP_TILE_SLOWDOWN = 0.14  # tiled 32K all-linear: 4,704 vs 5,469 tok/s untiled (H200, 2026-11-22)
# The throughput model's measured error: median |log error| 0.070 over 33 H200 runs
# (benchmarks/results/fit-throughput-2026-11-22.txt). Candidates predicted within it of the fastest are ties: a 1 %
# predicted gain is noise, an OOM is not. Among ties the fastest that leaves HEADROOM of the usable memory free wins
# (none does: the one with the lowest peak). "Most headroom" outright would pick every host-RAM lever at once, whose
# real cost the speed model knows least.
THROUGHPUT_ERROR = 0.07
HEADROOM = 0.10
# Two candidates predicted within NEAR_TIE of each other are a tie whatever the memory: the model's error on the ratio
# of two setups of one shape is about that (offloaded/on at the GPU-bound pairs of sessions 6-7: 0.0-1.1 %;
# benchmarks/fit_throughput.py). Among them the one with the lowest peak wins: at 16K offloaded checkpointing runs at
# 1.00x of on in 2.2 GiB less (issue 16). Two trades are not made for memory alone: another optimizer (8-bit states
# are lossier: EIGHT_BIT_PENALTY), and lm_head in host RAM where the fastest keeps it on the GPU (every eval forward
# pays its copy too, which the speed model leaves out).
NEAR_TIE = 0.02
# The estimator's worst under-prediction on the held-out families (benchmarks/results/holdout-h200-2026-11-29.jsonl,
# first run, before any fix: -4.0 %). The safety margin never goes below it.
ESTIMATE_UNDER_ERROR = 0.04
LOSSES_ALL = O.plannable(O.LOSSES)


def losses_available(importable) -> tuple[str, ...]:
    """The plannable losses whose required module (liger-kernel for fused) `importable(name)` finds."""
    return tuple(x.name for x in O.LOSSES if x.plannable and (x.requires is None or importable(x.requires)))


@dataclass(frozen=True)
class Lengths:
    """Token-length statistics of the training set, after truncation to max_seq_length."""

    max: int
    p99: int
    mean: float


def lengths_of(stats) -> Lengths | None:
    """Accept qlorafit.runtime.data.LengthStats (or anything with max, p99, mean) or None."""
    if stats is None or isinstance(stats, Lengths):
        return stats
    return Lengths(int(stats.max), int(stats.p99), float(stats.mean))


@dataclass(frozen=True)
class PlanRequest:
    budget_bytes: int  # GPU memory the run may use (a card's total, free memory, or --budget), before the safety margin
    max_seq_length: int = 512
    lengths: Lengths | None = None  # dataset token lengths; None: every sample is assumed max_seq_length long
    effective_batch: int = 16
    """Sequences per optimizer step (micro_batch_size x grad_accum). Ignored when effective_tokens > 0."""
    effective_tokens: int = 0  # tokens per optimizer step instead of sequences (0 = use effective_batch)
    safety_margin: float = 0.05
    """Fraction of the budget kept free: allocator behaviour varies between driver and torch versions."""
    base: Setup = Setup()
    """The fixed choices (quant, rank, targets, dropout, dtypes, attention); the searched fields are overwritten."""
    gpu: GPU | None = None  # the GPU whose speed ranks candidates; None: the reference GPU
    losses: tuple[str, ...] = LOSSES_ALL
    packing: tuple[bool, ...] | None = None  # packing values to try; None: both when lengths are given, else off
    offload_embedding: tuple[bool, ...] = (False, True)
    offload_lm_head: tuple[bool, ...] = (False, True)
    """lm_head in host RAM, streamed by the loss: one PCIe copy of the head per micro-batch (qlorafit stack only)."""
    compile: tuple[bool, ...] | None = None
    """train.compile values to try; None: the base's own (the planner keeps the user's choice)."""
    mlp_tiles: tuple[int, ...] = (0, 8192)
    """MLP tile sizes to try (train.mlp_tile_tokens; 0 = off); a tile only applies to rows longer than it."""
    optimizers: tuple[str, ...] = O.plannable(O.OPTIMIZERS)
    checkpointing: tuple[str, ...] = O.names(O.CHECKPOINTING)
    calibration: Calibration | None = None
    """The throughput model's calibration; None: load_calibration for `gpu` (the file, else the shipped H200 fit)."""
    top: int = 8
    context_bytes: int | None = None
    """This machine's CUDA context (`qlorafit estimate --measure-context`); None: the estimator's H200 figure."""


@dataclass(frozen=True)
class Candidate:
    setup: Setup
    grad_accum: int
    peak_bytes: int
    tokens_per_s: float
    fits: bool
    score: float

    @property
    def rows_per_step(self) -> int:
        return self.setup.batch_size * self.grad_accum


@dataclass(frozen=True)
class WayOut:
    """One change that lowers the peak, measured by the estimator from the smallest configuration found."""

    change: str
    saves_bytes: int
    peak_bytes: int
    fits: bool


@dataclass(frozen=True)
class PlanResult:
    request: PlanRequest
    gpu: GPU
    usable_bytes: int  # budget x (1 - safety margin): what a candidate's predicted peak must stay under
    size_len: int  # the sequence length every candidate is sized at (the longest sample, or max_seq_length)
    rows_per_step: dict  # {packing: rows per optimizer step} that keep the effective batch
    chosen: Candidate | None
    ranked: tuple[Candidate, ...]  # feasible candidates, best first (chosen is ranked[0])
    reasons: tuple[str, ...] = ()
    smallest: Candidate | None = None  # the candidate with the lowest peak (what nothing-fits measures from)
    min_budget_bytes: int = 0  # the smallest budget (before the margin) on which the smallest candidate fits
    ways_out: tuple[WayOut, ...] = ()
    n_candidates: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class _Rows:
    computed: float    # tokens computed per row, padding included
    real: float        # tokens trained per row
    attn: float        # tokens each token attends over
    size_len: int      # the length memory is sized at


def _rows(req: PlanRequest, packing: bool, batch: int) -> _Rows:
    L = req.lengths
    msl = req.max_seq_length
    if L is None:
        return _Rows(float(msl), msl * (PACK_FILL if packing else 1.0), float(msl), msl)
    longest = min(L.max, msl)
    mean = min(L.mean, longest)
    if packing:  # rows always full: memory of a full row whatever the lengths; attention stays within a sample
        return _Rows(float(msl), msl * PACK_FILL, mean, msl)
    padded = mean * (1 + GROUP_PAD_FRACTION) if batch > 1 else mean
    return _Rows(min(padded, longest), mean, mean, longest)


def rows_per_step(req: PlanRequest, packing: bool) -> int:
    """Rows per optimizer step that keep the requested effective batch (in sequences or tokens)."""
    L = req.lengths
    mean = min(L.mean, req.max_seq_length) if L else req.max_seq_length
    row_real = req.max_seq_length * PACK_FILL if packing else mean
    if req.effective_tokens > 0:
        return max(1, round(req.effective_tokens / row_real))
    # a packed row holds ~max_seq_length / mean samples
    return max(1, round(req.effective_batch * mean / row_real)) if packing else req.effective_batch


def _validate(req: PlanRequest) -> None:
    L = req.lengths
    problems = [msg for bad, msg in (
        (req.budget_bytes <= 0, "budget must be positive"),
        (not 0 <= req.safety_margin < 0.5, f"safety margin must be in [0, 0.5), got {req.safety_margin}"),
        (req.max_seq_length <= 0, f"max_seq_length must be positive, got {req.max_seq_length}"),
        (req.effective_batch <= 0 and req.effective_tokens <= 0, "the effective batch must be positive"),
        (L and (L.max <= 0 or L.mean <= 0), "length statistics must be positive")) if bad]
    if problems:
        raise UserError("; ".join(problems))


def packed_batch_error(req: PlanRequest) -> float:
    """How far whole packed rows per step miss the asked effective batch (0.1 = 10%)."""
    mean = min(req.lengths.mean, req.max_seq_length) if req.lengths else req.max_seq_length
    asked = req.effective_tokens or req.effective_batch * mean
    return abs(rows_per_step(req, True) * req.max_seq_length * PACK_FILL / asked - 1)


def _packings(req: PlanRequest) -> tuple[bool, ...]:
    if req.packing is not None:
        return req.packing
    return (False,) if req.lengths is None or packed_batch_error(req) > PACK_BATCH_TOLERANCE else (False, True)


def search_axes(req: PlanRequest) -> dict[str, tuple]:
    """{Setup field: values to try} for every field declared searched with a plan_axis (qlorafit.core.setup)."""
    axes = {f.name: tuple(getattr(req, f.metadata["plan_axis"]) or (getattr(req.base, f.name),))
            for f in knobs("searched") if f.metadata["plan_axis"]}
    if not O.stack(req.base.stack).host_levers:  # only qlorafit's own trainer streams lm_head from host RAM
        axes["offload_lm_head"] = (False,)
    for name, kind in (("optimizer", "optimizer"), ("loss_impl", "loss")):
        if not O.get(kind, getattr(req.base, name)).plannable:  # a different update rule or loss than
            axes[name] = (getattr(req.base, name),)  # the plannable ones: the user's choice is kept, never swapped
    return axes


def _candidates(shape: ModelShape, req: PlanRequest, gpu: GPU):
    usable = int(req.budget_bytes * (1 - req.safety_margin))
    axes = search_axes(req)
    for packing in _packings(req):
        rows = rows_per_step(req, packing)
        for b in divisors(rows):  # micro-batch x grad_accum = rows: the effective batch stays fixed
            rt = _rows(req, packing, b)
            seen = set()
            for values in itertools.product(*axes.values()):
                s = replace(req.base, batch_size=b, seq_len=rt.size_len, packing=packing, **dict(zip(axes, values)))
                if s.mlp_tile_tokens and s.mlp_tile_tokens >= rt.size_len:
                    continue  # rows no longer than a tile: tiling changes nothing
                if s.offload_lm_head:  # a head in host RAM is always streamed, whatever loss_impl says: tried once,
                    s = replace(s, loss_impl="chunked")  # as the chunked loss it stands in for
                if s not in seen:
                    seen.add(s)
                    yield _evaluate(shape, s, rows // b, gpu, req, usable, rt)


def _evaluate(shape, s, accum, gpu, req, usable, rt: _Rows) -> Candidate:
    peak = estimate(shape, s, req.context_bytes).peak_bytes
    tps = predict(shape, s, gpu, accum, rt.computed, rt.real, req.calibration, rt.attn).tokens_per_s
    score = tps * (1 - (EIGHT_BIT_PENALTY if O.optimizer(s.optimizer).eight_bit else 0))
    if s.mlp_tile_tokens:  # one more MLP forward per step: 14% fewer tokens/s measured at 32K on an H200
        tps *= 1 - MLP_TILE_SLOWDOWN
        score *= 1 - MLP_TILE_SLOWDOWN
    return Candidate(s, accum, peak, tps, peak <= usable, score)


def _rank_key(c: Candidate):
    s = c.setup  # ties: fewer unusual options, then less memory
    return (-round(c.score, 6), s.offload_lm_head, s.offload_embedding, O.checkpointing(s.grad_checkpointing).to_host,
            s.mlp_tile_tokens, s.compile, c.peak_bytes)


def plan(shape: ModelShape, req: PlanRequest) -> PlanResult:
    """Search the space, rank what fits by predicted tokens/s, explain the choice, or say how to make something fit.

    >>> from qlorafit.core.catalog import resolve_model
    >>> r = plan(resolve_model("llama-3.1-8b"), PlanRequest(budget_bytes=24 * 1024**3, max_seq_length=2048))
    >>> r.chosen.setup.batch_size * r.chosen.grad_accum
    16
    """
    _validate(req)
    estimate(shape, req.base)  # raise once on a bad fixed choice, before the search multiplies it
    gpu = req.gpu or get_gpu(REFERENCE_GPU)
    if req.calibration is None:  # every caller ranks with the measured calibration, not the built-in guesses
        req = replace(req, calibration=load_calibration(gpu.name))
    notes = []
    if req.safety_margin < ESTIMATE_UNDER_ERROR:
        notes.append(f"safety margin raised from {req.safety_margin:.0%} to {ESTIMATE_UNDER_ERROR:.0%}: the estimator "
                     f"has under-predicted by up to {ESTIMATE_UNDER_ERROR:.0%} on models it was not fitted to")
        req = replace(req, safety_margin=ESTIMATE_UNDER_ERROR)
    usable = int(req.budget_bytes * (1 - req.safety_margin))
    cands = list(_candidates(shape, req, gpu))
    feasible = prefer_headroom(prefer_leaner(sorted((c for c in cands if c.fits), key=_rank_key)), usable)
    smallest = min(cands, key=lambda c: (c.peak_bytes, -c.score))
    packings = sorted({c.setup.packing for c in cands})
    rows = {p: rows_per_step(req, p) for p in packings}
    size_len = min(req.lengths.max, req.max_seq_length) if req.lengths else req.max_seq_length
    if req.packing is None and req.lengths and True not in packings:
        notes.append(f"packing not tried: whole packed rows of {req.max_seq_length} tokens would change the "
                     f"effective batch by {packed_batch_error(req):.0%}")
    if req.gpu is None:
        notes.append(f"speeds are predicted for {gpu.name} (name your GPU with --gpu for its own)")
    min_budget = -(-smallest.peak_bytes * 1000 // int(round((1 - req.safety_margin) * 1000)))  # its peak + margin
    result = PlanResult(req, gpu, usable, size_len, rows, feasible[0] if feasible else None, tuple(feasible),
                        smallest=smallest, min_budget_bytes=min_budget, n_candidates=len(cands), notes=tuple(notes))
    return replace(result, reasons=tuple(explain(shape, result))) if feasible else \
        replace(result, ways_out=tuple(ways_out(shape, result)))


def near_ties(ranked: list[Candidate]) -> list[Candidate]:
    """The candidates that tie with the first (ranked best first): predicted within NEAR_TIE of it, with its optimizer
    and no lm_head in host RAM that it keeps on the GPU."""
    best = ranked[0]
    return [c for c in ranked if c.score >= best.score * (1 - NEAR_TIE) and c.setup.optimizer == best.setup.optimizer
            and c.setup.offload_lm_head <= best.setup.offload_lm_head]


def prefer_leaner(ranked: list[Candidate]) -> list[Candidate]:
    """Move to the front the near tie of the first (near_ties) with the lowest peak. The rest keep their order.

    >>> on, off = Setup(grad_checkpointing="on"), Setup(grad_checkpointing="offload")
    >>> a, b = Candidate(on, 1, 95, 101.0, True, 101.0), Candidate(off, 1, 80, 100.0, True, 100.0)
    >>> prefer_leaner([a, b])[0] is b      # 1 % slower, 15 units less
    True
    >>> prefer_leaner([a, replace(b, score=97.0)])[0] is a      # 4 % slower is not a tie
    True
    """
    if not ranked:
        return ranked
    lean = min(near_ties(ranked), key=lambda c: c.peak_bytes)  # min keeps the earliest (fastest) of equal peaks
    return [lean] + [c for c in ranked if c is not lean]


def prefer_headroom(ranked: list[Candidate], usable: int) -> list[Candidate]:
    """Move to the front, among the candidates predicted within THROUGHPUT_ERROR of the fastest, the fastest whose
    peak leaves HEADROOM of `usable` free, else the one with the lowest peak. The rest keep their order.

    >>> a, b = (Candidate(None, 1, p, t, True, t) for p, t in ((95, 101.0), (60, 100.0)))
    >>> prefer_headroom([a, b], 100)[0] is b      # 1 % slower, 35 more units free
    True
    """
    if not ranked or ranked[0].peak_bytes <= usable * (1 - HEADROOM):
        return ranked
    ties = [c for c in ranked if c.score >= ranked[0].score * (1 - THROUGHPUT_ERROR)]
    roomy = next((c for c in ties if c.peak_bytes <= usable * (1 - HEADROOM)), None)
    roomy = roomy or min(ties, key=lambda c: c.peak_bytes)  # min keeps the earliest (fastest) of equal peaks
    return [roomy] + [c for c in ranked if c is not roomy]


def distinct(ranked) -> list[Candidate]:
    """The best candidate of each shape (micro-batch, accumulation, checkpointing, loss, packing, embedding):
    optimizer variants of one shape run at the same speed, so a table of runner-ups shows only the best of them."""
    best = {}
    for c in ranked:  # the first of each shape is its best: `ranked` is best first
        s = c.setup
        best.setdefault((s.batch_size, c.grad_accum, s.grad_checkpointing, s.loss_impl, s.packing, s.offload_embedding,
                         s.offload_lm_head, s.mlp_tile_tokens), c)
    return list(best.values())


# --- why this one ------------------------------------------------------------------------------------------------

def _neighbour(shape, r: PlanResult, c: Candidate, **changes) -> Candidate:
    s = replace(c.setup, **changes)
    rows = r.rows_per_step.get(s.packing) or rows_per_step(r.request, s.packing)
    if rows % s.batch_size:
        s = replace(s, batch_size=max(d for d in divisors(rows) if d <= s.batch_size))
    rt = _rows(r.request, s.packing, s.batch_size)
    s = replace(s, seq_len=rt.size_len)
    return _evaluate(shape, s, rows // s.batch_size, r.gpu, r.request, r.usable_bytes, rt)


def _pct(a: float, b: float) -> str:
    return f"{abs(a / b - 1) * 100:.0f}%"


def explain(shape: ModelShape, r: PlanResult) -> list[str]:
    """One line per searched choice: why this value and not the others, with the numbers that decided it."""
    c, req = r.chosen, r.request
    s = c.setup
    out = []
    L = req.lengths
    sized = (f"the longest sample ({r.size_len} tokens; p99 {L.p99}, mean {L.mean:.0f})" if L else
             f"full rows of {r.size_len} tokens (no length statistics given)")
    out.append(f"sized for {sized}: peak {fmt_gib(c.peak_bytes)} of {fmt_gib(r.usable_bytes)} usable "
               f"({fmt_gib(req.budget_bytes)} minus {req.safety_margin:.0%} margin)")
    fastest = max(r.ranked, key=lambda x: x.score)
    if fastest is not c:
        fs = fastest.setup
        what = (f"{fs.batch_size} x {fastest.grad_accum}, checkpointing {fs.grad_checkpointing}, {fs.loss_impl} loss"
                + (", embedding in host RAM" if fs.offload_embedding else "")
                + (", lm_head in host RAM" if fs.offload_lm_head else ""))
        if c.score >= fastest.score * (1 - NEAR_TIE):
            rule = (f"within the {NEAR_TIE:.0%} the speed model cannot tell two setups apart by, so the one with the "
                    f"lower peak wins")
        else:
            rule = (f"within the speed model's {THROUGHPUT_ERROR:.0%} median error, so the one with {HEADROOM:.0%} "
                    f"of the memory to spare wins")
        out.append(f"chosen for headroom: {fmt_gib(r.usable_bytes - c.peak_bytes)} left, against "
                   f"{fmt_gib(r.usable_bytes - fastest.peak_bytes)} for the fastest "
                   f"({what}: {fmt_gib(fastest.peak_bytes)}), which is "
                   f"predicted only {_pct(fastest.tokens_per_s, c.tokens_per_s)} faster: {rule}")
    # micro-batch: the next larger divisor, same everything else
    rows = c.rows_per_step
    bigger = [d for d in divisors(rows) if d > s.batch_size]
    line = f"micro_batch_size {s.batch_size} x grad_accum {c.grad_accum} = {rows} sequences per step"
    if s.packing:
        mean = min(L.mean, req.max_seq_length) if L else req.max_seq_length
        line = (f"micro_batch_size {s.batch_size} x grad_accum {c.grad_accum} = {rows} packed rows per step "
                f"(~{rows * req.max_seq_length * PACK_FILL / mean:.0f} samples)")
    if bigger:
        nb = _neighbour(shape, r, c, batch_size=bigger[0])
        if not nb.fits:
            line += f": micro-batch {bigger[0]} would need {fmt_gib(nb.peak_bytes)}"
        else:
            line += f": micro-batch {bigger[0]} fits but is predicted {_pct(nb.tokens_per_s, c.tokens_per_s)} slower here"
    else:
        line += ": the whole step in one micro-batch, no accumulation"
    out += [line, _field_reason(shape, r, "grad_checkpointing", O.names(O.CHECKPOINTING)),
            _field_reason(shape, r, "optimizer", req.optimizers),
            # loss_impl is moot with lm_head in host RAM: the head there is only read by the streamed loss
            "loss_impl: the streamed loss (lm_head in host RAM, one pass over the vocabulary in slices)"
            if s.offload_lm_head else _field_reason(shape, r, "loss_impl", req.losses)]
    if len(r.rows_per_step) > 1 or s.packing:
        out.append(_field_reason(shape, r, "packing", (False, True)))
    out.append(_field_reason(shape, r, "offload_embedding", req.offload_embedding))
    if O.stack(req.base.stack).host_levers:
        out.append(_field_reason(shape, r, "offload_lm_head", req.offload_lm_head))
    if req.compile and len(req.compile) > 1:
        out.append(_field_reason(shape, r, "compile", req.compile))
    tiles = [t for t in req.mlp_tiles if t]
    if tiles and c.setup.seq_len > min(tiles):  # tiling is only a choice for rows longer than a tile
        out.append(_field_reason(shape, r, "mlp_tile_tokens", req.mlp_tiles))
    return out


def _field_reason(shape, r: PlanResult, name: str, values) -> str:
    c = r.chosen
    v = getattr(c.setup, name)
    kind = next(f for f in knobs() if f.name == name).metadata["choices"]  # a spec kind: its help says what v does
    head = f"{name} {_show(v)}" + (f" ({O.get(kind, v).help.split(' (')[0]})" if isinstance(kind, str) else "")
    bits = []
    for alt in values:
        if alt == v:
            continue
        nb = _neighbour(shape, r, c, **{name: alt})
        if not nb.fits:
            bits.append(f"{_show(alt)} would need {fmt_gib(nb.peak_bytes)}")
        elif nb.tokens_per_s > c.tokens_per_s * 1.0005:
            # a faster feasible neighbour loses to the 8-bit penalty, or to a lower peak (a near tie, or headroom)
            faster = f"{_show(alt)} {_pct(nb.tokens_per_s, c.tokens_per_s)} faster"
            if nb.score <= c.score:
                bits.append(f"{faster}, ranked {EIGHT_BIT_PENALTY:.0%} lower for its 8-bit states")
            else:
                why = "a near tie" if c.score >= nb.score * (1 - NEAR_TIE) else "less headroom"
                bits.append(f"{faster} but {fmt_gib(nb.peak_bytes - c.peak_bytes)} larger ({why})")
        elif nb.tokens_per_s < c.tokens_per_s * 0.9995:
            bits.append(f"{_show(alt)} {_pct(nb.tokens_per_s, c.tokens_per_s)} slower")
        else:
            saved = c.peak_bytes - nb.peak_bytes
            bits.append(f"{_show(alt)} same speed" + (f", saves {fmt_gib(saved)} not needed" if saved > 0 else ""))
    return head + (": " + "; ".join(bits) if bits else "")


def _show(v) -> str:
    return ("on" if v else "off") if isinstance(v, bool) else str(v)


# --- when nothing fits -------------------------------------------------------------------------------------------

def ways_out(shape: ModelShape, r: PlanResult) -> list[WayOut]:
    """From the smallest configuration found: each lever alone (the sequence length, rank, targets and MLP tiles, then
    those of qlorafit.core.levers), with the bytes it saves and whether it then fits. Levers the search already pulled
    (offloaded checkpointing, 8-bit optimizer) are reported with what they saved, so the user sees they are in use."""
    base, peak0, ctx = r.smallest.setup, r.smallest.peak_bytes, r.request.context_bytes
    seq = _longest_fitting_seq(shape, base, r.usable_bytes, ctx)
    short = {"seq_len": seq or max(1, base.seq_len // 4)}
    levers = [(f"max_seq_length {seq} (from {base.seq_len}; longer samples are truncated)" if seq else
               f"max_seq_length {short['seq_len']} (not enough at any length: the rest alone is over)", short, None)]
    rank = next((x for x in (8, 4) if base.lora_r > x), None)
    if rank:
        levers.append((f"LoRA rank {rank} (from {base.lora_r})", {"lora_r": rank}, None))
    targets = base.targets(shape)
    if set(targets) - set(ATTN_LINEARS):
        levers.append(("LoRA on attention only (q,k,v,o)", {"lora_targets": ATTN_LINEARS}, None))
    elif len(targets) > 2:
        levers.append(("LoRA on q_proj,v_proj only", {"lora_targets": ("q_proj", "v_proj")}, None))
    if base.seq_len > 8192:
        levers.append(("MLP tiled over the sequence (train.mlp_tile_tokens: 8192)", {"mlp_tile_tokens": 8192},
                       base.mlp_tile_tokens and {"mlp_tile_tokens": 0}))
    levers += [(lv.plan, lv.applies(base) and lv.change(base), lv.undo and lv.undo(base)) for lv in LEVERS if lv.plan]
    out, together = [], base
    for change, pull, undo in levers:
        if undo:  # pulled already: the saving is the other way round
            p = estimate(shape, replace(base, **undo), ctx).peak_bytes
            out.append(WayOut(change.split(" (")[0] + " (already in the smallest configuration)", p - peak0, peak0, False))
        elif pull and (p := estimate(shape, replace(base, **pull), ctx).peak_bytes) < peak0:
            out.append(WayOut(change, peak0 - p, p, p <= r.usable_bytes))
            together = replace(together, **pull)
    fresh = sorted((w for w in out if "already" not in w.change), key=lambda w: (not w.fits, -w.saves_bytes))
    if fresh and not any(w.fits for w in fresh):  # no single lever is enough: what all of them do together
        together = replace(together, seq_len=max(1, base.seq_len // 4), lora_r=min(base.lora_r, 8),
                           lora_targets=("q_proj", "v_proj"))
        p = estimate(shape, together, ctx).peak_bytes
        fresh.append(WayOut(f"all of these together (max_seq_length {together.seq_len}, r={together.lora_r}, "
                            f"q_proj,v_proj)", peak0 - p, p, p <= r.usable_bytes))
    return fresh + [w for w in out if "already" in w.change]


def _longest_fitting_seq(shape: ModelShape, s: Setup, usable: int, context_bytes: int | None = None) -> int:
    """The longest sequence length (a multiple of 64, or below 64 any) at which `s` fits; 0 if none."""
    lo, hi = 0, s.seq_len - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate(shape, replace(s, seq_len=mid), context_bytes).peak_bytes <= usable:
            lo = mid
        else:
            hi = mid - 1
    return lo - lo % 64 if lo >= 64 else lo


# --- to and from the train config ----------------------------------------------------------------------------------

def apply_to_config(cfg: Config, c: Candidate) -> Config:
    """A copy of `cfg` with the searched fields set from the candidate; everything else is left as the user had it."""
    out = apply_setup(cfg, c.setup, [f.name for f in knobs("searched")])
    out.train.grad_accum = c.grad_accum
    return out


def nothing_fits_message(r: PlanResult) -> str:
    s = r.smallest
    lines = [f"nothing fits in {fmt_gib(r.usable_bytes)} usable ({fmt_gib(r.request.budget_bytes)} minus "
             f"{r.request.safety_margin:.0%} margin): the smallest of {r.n_candidates} configurations needs "
             f"{fmt_gib(s.peak_bytes)} at {r.size_len} tokens, so the smallest budget that fits is "
             f"{fmt_gib(r.min_budget_bytes)}.", "ways out, each alone, from that smallest configuration:"]
    for w in r.ways_out:  # a lever already pulled: what it saves; one to pull: the peak it leads to
        verdict = "fits" if w.fits else "still over"
        after = "" if "already" in w.change else f" -> peak {fmt_gib(w.peak_bytes)} ({verdict})"
        lines.append(f"  - {w.change}: saves {fmt_gib(w.saves_bytes)}{after}")
    return "\n".join(lines)


def plan_ranks(shape: ModelShape, req: PlanRequest, gpus: int, strategy: str = "auto"):
    """Several GPUs (req's batch is one GPU's share): (the one-GPU PlanResult, the candidate, its RankEstimate).

    ddp first, as the fastest where it fits (no per-layer collectives): the one-GPU plan in the budget less what ddp
    adds per GPU (the gradient buffer, NCCL). Else fsdp at micro-batch 1 with checkpointing on, then fsdp with the
    shards in host RAM. `strategy` ddp or fsdp keeps to that one. Raises UserError when nothing fits.
    """
    from qlorafit.core import dist_estimate as DE

    r = plan(shape, replace(req, budget_bytes=req.budget_bytes - DE.ddp_extra_bytes(shape, req.base, gpus)))
    if r.chosen is not None and strategy in ("auto", "ddp"):
        return r, r.chosen, DE.estimate_ranks(shape, r.chosen.setup, gpus, "ddp")
    if strategy == "ddp":
        raise UserError(f"dist.strategy=ddp: {nothing_fits_message(r)}\nor set dist.strategy=fsdp (or auto) to "
                        f"shard the model over the {gpus} GPUs")
    r = plan(shape, req)  # fsdp is sized against the whole budget (ddp's buffers are not there)
    s = DE.fsdp_setup(replace(r.smallest.setup, batch_size=1))
    ranks = next((x for x in (DE.estimate_ranks(shape, s, gpus, "fsdp", off) for off in (False, True))
                  if x.fits(r.usable_bytes)), None)
    if ranks is None:
        big = DE.estimate_ranks(shape, s, gpus, "fsdp", True)
        raise UserError(f"nothing fits on {gpus} GPUs: even fsdp with dist.cpu_offload at micro-batch 1 x "
                        f"{r.size_len} tokens needs {fmt_gib(big.peak_bytes)} per GPU of {fmt_gib(r.usable_bytes)} "
                        f"usable. Lower the max sequence length or add GPUs.")
    rows = r.rows_per_step[s.packing]
    return r, Candidate(s, rows, ranks.peak_bytes, 0.0, True, 0.0), ranks


def plan_config(cfg: Config, shape: ModelShape, budget_bytes: int, length_stats=None, gpu: GPU | None = None,
                safety_margin: float = 0.05, liger_available: bool = True, gpus: int = 1) -> Config:
    """For `qlorafit train --plan auto`: the config with its searched fields planned to fit `budget_bytes`.

    Keeps the effective batch (micro_batch_size x grad_accum), max_seq_length, model, LoRA and data choices, and the
    user's packing (packing changes what a batch means, so train leaves it alone). Raises UserError with the smallest
    budget and the ways out when nothing fits. gpus > 1 (under torchrun): the batch is per GPU, the budget each GPU's,
    and dist.strategy / dist.cpu_offload are planned too where dist.strategy is auto.
    """
    base = setup_from_config(cfg, gpu.bf16 if gpu else True)
    req = PlanRequest(
        budget_bytes=budget_bytes, max_seq_length=cfg.data.max_seq_length, lengths=lengths_of(length_stats),
        effective_batch=cfg.train.micro_batch_size * cfg.train.grad_accum, safety_margin=safety_margin, base=base,
        gpu=gpu, losses=losses_available(lambda module: liger_available), packing=(cfg.data.packing,),
    )
    if gpus > 1:
        _, cand, ranks = plan_ranks(shape, req, gpus, cfg.dist.strategy)
        out = apply_to_config(cfg, cand)
        out.dist.strategy, out.dist.cpu_offload = ranks.strategy, ranks.cpu_offload or cfg.dist.cpu_offload
        return out
    r = plan(shape, req)
    if r.chosen is None:
        raise UserError(nothing_fits_message(r))
    return apply_to_config(cfg, r.chosen)
