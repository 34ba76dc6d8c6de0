"""The planner within its error bars (issue 13, item 5): a predicted gain smaller than the speed model's error does
not buy a configuration at the edge of memory, and the margin is never below the estimator's out-of-sample error."""

from qlorafit.core.catalog import get_gpu, resolve_model
from qlorafit.core.plan import ESTIMATE_UNDER_ERROR, HEADROOM, THROUGHPUT_ERROR, PlanRequest, plan
from qlorafit.core.sizes import GIB

SHAPE, GPU = resolve_model("llama-3.1-8b"), get_gpu("rtx4090")


def _plan(**kw):
    return plan(SHAPE, PlanRequest(budget_bytes=GPU.memory_bytes, gpu=GPU, max_seq_length=8192, effective_batch=16,
                                   **kw))


def test_the_issues_case_takes_headroom_over_a_one_percent_gain():
    """llama-3.1-8b on a 4090 at 8,192 tokens, batch 16, no liger: 4 x 4 at 22.0 of 22.8 GiB was picked for +1 %.

    Since offloaded checkpointing is modelled as free where the GPU is the bottleneck (1.00x of on, measured at
    4 x 2,048 and 16K on the H200), a roomy 4 x 4 with offloaded layer inputs (17.0 GiB) is the fastest of the whole
    search, so the edge case lives among the setups that keep the layer inputs on the GPU; the whole search also
    keeps the headroom."""
    whole = _plan(losses=("standard", "chunked"))
    assert whole.chosen.peak_bytes <= whole.usable_bytes * (1 - HEADROOM)
    r = _plan(losses=("standard", "chunked"), checkpointing=("off", "on"))
    fastest = max(r.ranked, key=lambda c: c.score)
    assert fastest.peak_bytes > r.usable_bytes * (1 - HEADROOM)  # the edge-of-memory one is still the fastest...
    assert r.chosen is not fastest and r.chosen.peak_bytes <= r.usable_bytes * (1 - HEADROOM)  # ...but not chosen
    assert r.chosen.score >= fastest.score * (1 - THROUGHPUT_ERROR)
    assert any(line.startswith("chosen for headroom") for line in r.reasons)


def test_a_clear_winner_is_kept_and_says_nothing_about_headroom():
    r = plan(SHAPE, PlanRequest(budget_bytes=80 * GIB, gpu=get_gpu("h100"), max_seq_length=1024, effective_batch=16))
    assert r.chosen is max(r.ranked, key=lambda c: c.score) or r.chosen.peak_bytes <= r.usable_bytes * (1 - HEADROOM)
    assert not any(line.startswith("chosen for headroom") for line in r.reasons)


def test_margin_never_below_the_estimators_out_of_sample_error():
    r = _plan(safety_margin=0.01)
    assert r.request.safety_margin == ESTIMATE_UNDER_ERROR
    assert r.usable_bytes == int(GPU.memory_bytes * (1 - ESTIMATE_UNDER_ERROR))
    assert any("safety margin raised" in n for n in r.notes)


def test_a_measured_context_replaces_the_h200_figure_in_every_candidate():
    from qlorafit.core.estimate import CUDA_CONTEXT_BYTES

    a, b = _plan(), _plan(context_bytes=300 * 1024**2)
    assert a.chosen.setup == b.chosen.setup or b.chosen.peak_bytes <= b.usable_bytes
    same = [c for c in b.ranked if c.setup == a.chosen.setup][0]
    assert a.chosen.peak_bytes - same.peak_bytes == CUDA_CONTEXT_BYTES - 300 * 1024**2
