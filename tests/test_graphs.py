"""train.cuda_graphs (qlorafit.runtime.graphs): the captured micro-batch computes the eager step's update.

A real capture needs a GPU (benchmarks/graph_probe.py checks the gradients there). Here the capture is a CPU stand-in
whose replay runs the captured function again on the static buffers, so everything around the capture is checked:
the bucketed right padding without an attention mask, the masked loss, the warm-up pass being undone, the static
inputs and divisor refreshed before each replay, gradients accumulated into kept tensors, and the reset when they are
replaced.
"""

import pytest
import torch

from qlorafit.core import config as C
from qlorafit.runtime import graphs as GR
from qlorafit.runtime.loss import IGNORE, LinearCrossEntropy
from qlorafit.runtime.train import loop, setup
from test_train_helpers import adapter, make_cfg, read_jsonl


class _Replay:
    """A stand-in CUDA graph: replay() runs the function again and writes its result into the static output."""

    def __init__(self, fn, out, log):
        self.fn, self.out, self.log = fn, out, log

    def replay(self):
        self.log.append("replay")
        self.out.copy_(self.fn())  # fn's backward runs inside, as the captured one does


def _stand_in(log):
    def capture(fn, pool):
        fn()  # the warm-up pass a real capture runs on a side stream: it adds to .grad, as on a GPU
        log.append("capture")
        out = fn().clone()  # a real capture computes nothing; the stand-in does, and run() must undo it as well
        return _Replay(fn, out, log), out, pool
    return capture


def test_masked_chunked_loss_matches_dropping_the_ignored_positions():
    torch.manual_seed(0)
    h = torch.randn(37, 16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)
    y = torch.randint(0, 50, (37,))
    y[::3] = IGNORE
    keep = (y != IGNORE).nonzero().squeeze(1)
    ref = LinearCrossEntropy.apply(h.index_select(0, keep), w, None, y[keep], 8, None)
    ref.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad, w.grad = None, None
    got = LinearCrossEntropy.apply(h, w, None, y, 8, None, True)
    got.backward()
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(h.grad, gh)  # zero on the ignored rows
    torch.testing.assert_close(w.grad, gw)
    assert h.grad[::3].abs().sum() == 0


@pytest.mark.parametrize("accum", [1, 2])
def test_captured_micro_batches_train_like_the_eager_step(model_dir, data, tmp_path, accum):
    """Same losses and the same adapter after 6 steps, with the shapes captured and replayed (stand-in capture);
    variable lengths (group_by_length off), so buckets and padding are exercised, and accumulation when accum=2."""
    runs, log = {}, []
    for graphs in (False, True):
        out = tmp_path / f"g{graphs}"
        cfg = make_cfg(model_dir, data, out, train={"max_steps": 6, "micro_batch_size": 2, "grad_accum": accum,
                                                    "grad_checkpointing": "on"},
                       data={"group_by_length": False})
        run = setup(cfg, quiet=True)
        if graphs:
            run.ctx.graphs = GR.MicroBatchGraphs(run.ctx.model, run.ctx.params, capture=_stand_in(log))
        loop(run)
        runs[graphs] = ([r["loss"] for r in read_jsonl(out / "metrics.jsonl")], adapter(out / "final"))
    assert "capture" in log and log.count("replay") >= 2  # the later micro-batches replayed
    (loss_a, ad_a), (loss_b, ad_b) = runs[False], runs[True]
    assert loss_b == pytest.approx(loss_a, rel=1e-5)
    for k in ad_a:
        torch.testing.assert_close(ad_b[k], ad_a[k], atol=1e-5, rtol=1e-4)


def test_stale_inputs_would_be_caught(model_dir, data, tmp_path):
    """The check above can fail: replays that do not load their micro-batch's inputs train differently."""
    losses = {}
    for stale in (False, True):
        out = tmp_path / f"s{stale}"
        run = setup(make_cfg(model_dir, data, out, train={"max_steps": 6, "micro_batch_size": 2},
                             data={"group_by_length": False}), quiet=True)
        g = GR.MicroBatchGraphs(run.ctx.model, run.ctx.params, capture=_stand_in([]))
        if stale:
            g._load = lambda *args: None
        run.ctx.graphs = g
        loop(run)
        losses[stale] = [r["loss"] for r in read_jsonl(out / "metrics.jsonl")]
    assert losses[True] != pytest.approx(losses[False], rel=1e-5)


def test_graphs_reset_when_the_gradient_tensors_are_replaced(model_dir, data, tmp_path):
    run = setup(make_cfg(model_dir, data, tmp_path / "r", train={"max_steps": 4, "micro_batch_size": 2}), quiet=True)
    log = []
    g = GR.MicroBatchGraphs(run.ctx.model, run.ctx.params, capture=_stand_in(log))
    run.ctx.graphs = g
    loop(run)
    assert g.graphs and g.grads is not None
    for p in run.ctx.params:  # what restore_grads does after an OOM in the first micro-batch
        p.grad = torch.zeros_like(p)
    from qlorafit.runtime.data import Sample
    g.run(run.ctx, [Sample(0, [1, 2, 3], [1, 2, 3])], 2.0, lambda *a: torch.zeros(()))  # a new shape: a warm pass
    assert not g.graphs and g.grads is None


def test_unsupported_settings_turn_graphs_off_with_the_reason(model_dir, data, tmp_path):
    cfg = make_cfg(model_dir, data, tmp_path / "u", train={"cuda_graphs": True})
    assert "CUDA device" in GR.unsupported(cfg, torch.device("cpu"), False)
    cuda = torch.device("cuda")
    cfg.model.compute_dtype = "bf16"
    assert GR.unsupported(cfg, cuda, False) is None
    assert "single process" in GR.unsupported(cfg, cuda, True)
    for section, key, value, words in (("lora", "dropout", 0.05, "lora.dropout"),
                                       ("train", "grad_checkpointing", "offload", "host RAM"),
                                       ("train", "loss_impl", "standard", "chunked"),
                                       ("model", "offload_lm_head", True, "offload_lm_head"),
                                       ("data", "packing", True, "packed"),
                                       ("model", "compute_dtype", "fp16", "fp16")):
        bad = C.from_dict(C.to_dict(cfg), "t")
        setattr(getattr(bad, section), key, value)
        assert words in GR.unsupported(bad, cuda, False), (section, key)
    # on this CPU machine setup turns it off, says why, and records it
    run = setup(cfg, quiet=True)
    assert run.ctx.graphs is None and run.cfg.train.cuda_graphs == "off"


def test_a_graph_that_disagrees_with_the_eager_pass_turns_graphs_off(model_dir, data, tmp_path):
    """The safety check on every new graph: a replay that computes something else (here: twice the gradients) is
    caught before any update uses it; the run goes on eagerly and trains like the eager run."""
    log = []

    class Doubled(_Replay):
        def replay(self):
            super().replay()
            super().replay()

    def capture(fn, pool):
        fn()
        out = fn().clone()
        return Doubled(fn, out, log), out, pool

    losses = {}
    for bad in (False, True):
        out = tmp_path / f"b{bad}"
        run = setup(make_cfg(model_dir, data, out, train={"max_steps": 5, "micro_batch_size": 2},
                             data={"group_by_length": False}), quiet=True)
        if bad:
            run.ctx.graphs = g = GR.MicroBatchGraphs(run.ctx.model, run.ctx.params, capture=capture)
            with pytest.warns(UserWarning, match="disagrees"):
                loop(run)
            assert g.disabled and not g.captures
        else:
            loop(run)
        losses[bad] = [r["loss"] for r in read_jsonl(out / "metrics.jsonl")]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_the_estimate_holds_the_graph_pool_measured_in_the_experiment():
    """Session 7's experiment (versus.py qlorafit-wholegraph, H200, Llama-3-8B): peak during the steps 6.89 GiB at
    1 x 2,048 and 6.54 GiB at 2 x 4 x 512 against 6.42 and 6.05 for the compiled default. The estimate with
    train.cuda_graphs is within 4 % of both, as close as it is to the default's rows; without the pool it is 7-10 %
    under."""
    import dataclasses
    import json
    from pathlib import Path

    from qlorafit.core import catalog
    from qlorafit.core.estimate import estimate
    from qlorafit.core.setup import setup_from_config

    shape = catalog.resolve_model("llama-3.1-8b")
    rows = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "versus-h200-2026-11-29-s7-call6.jsonl"
    checked = 0
    for line in rows.read_text().splitlines():
        r = json.loads(line)
        if r.get("contender") != "qlorafit-wholegraph":
            continue
        q = r["qlorafit_config"]
        seq = {"c1": 512, "c2": 2048}[r["config"]]
        cfg = C.from_dict({"train": q["config"], "data": {"max_seq_length": seq}, "lora": {"dropout": 0.0},
                           "model": {k: v for k, v in q["model"].items() if k != "name_or_path"}})
        s = dataclasses.replace(setup_from_config(cfg), cuda_graphs="on")
        e = estimate(shape, s, r["context_bytes"])
        assert abs(e.peak_bytes / r["used_peak_steps"] - 1) <= 0.04, (r["config"], e.peak_bytes / r["used_peak_steps"])
        assert e.component("CUDA graph pool") > 0
        without = estimate(shape, dataclasses.replace(s, cuda_graphs="off"), r["context_bytes"])
        assert without.peak_bytes / r["used_peak_steps"] - 1 < -0.04
        checked += 1
    assert checked == 2


def test_the_speed_model_takes_the_host_out_under_graphs():
    """The speed model with train.cuda_graphs: no host time beyond the GPU's, part of the per-kernel gap, uncompiled
    layers with liger's fused norms, RoPE and SwiGLU. Against the trainer's default rows (H200, Llama-3-8B, session 9
    call 2, benchmarks/results/versus-h200-2026-11-30-s9-call2.jsonl, where GRAPH_GAP_SHARE was fitted): 2 x 4 x 512
    and 1 x 2,048 within 5 %; and graphs well ahead of the compiled layers at 2 x 4 x 512 (2.4x measured in session
    8's call 5)."""
    import dataclasses
    import json
    from pathlib import Path

    from qlorafit.core import throughput as T
    from qlorafit.core.catalog import get_gpu, resolve_model
    from qlorafit.core.setup import Setup

    m, gpu, cal = resolve_model("llama-3.1-8b"), get_gpu("h200"), T.load_calibration("h200")
    rows = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "versus-h200-2026-11-30-s9-call2.jsonl"
    shapes = {"c1": (2, 4, 512), "c2": (1, 1, 2048)}
    checked = 0
    for line in rows.read_text().splitlines():
        r = json.loads(line)
        if r.get("contender") != "qlorafit" or r.get("config") not in shapes:
            continue
        b, accum, seq = shapes[r["config"]]
        s = Setup(batch_size=b, seq_len=seq, lora_dropout=0.0, grad_checkpointing="on", compile=True,
                  cuda_graphs="off")
        graphs = T.predict(m, dataclasses.replace(s, cuda_graphs="on"), gpu, accum, cal=cal)
        measured = r["tokens_per_s_median"]
        assert abs(graphs.tokens_per_s / measured - 1) <= 0.05, (b, seq, graphs.tokens_per_s, measured)
        assert graphs.parts_s["launches"] < T.predict(m, s, gpu, accum, cal=cal).parts_s["launches"] / 1.5
        checked += 1
    assert checked == 2
    s = Setup(batch_size=2, seq_len=512, lora_dropout=0.0, grad_checkpointing="on", compile=True, cuda_graphs="off")
    assert T.predict(m, dataclasses.replace(s, cuda_graphs="on"), gpu, 4, cal=cal).tokens_per_s > \
        1.4 * T.predict(m, s, gpu, 4, cal=cal).tokens_per_s


def test_auto_captures_short_micro_batches_where_the_setup_allows_it():
    """train.cuda_graphs auto (the default): on below options.GPU_BOUND_TOKENS tokens per micro-batch, where nothing
    blocks it; on ignores the length; off never; every blocker turns auto and on off; another trainer never graphs.
    The estimate carries the graphs' pool exactly where the setup resolves to graphs."""
    from dataclasses import replace

    from qlorafit.core import options as O
    from qlorafit.core.catalog import resolve_model
    from qlorafit.core.estimate import estimate
    from qlorafit.core.setup import Setup

    assert C.TrainConfig().cuda_graphs == "auto" and C.LoraConfig().dropout == 0.0
    short, long = Setup(batch_size=1, seq_len=2048), Setup(batch_size=4, seq_len=2048)
    assert short.graphs() and not long.graphs()
    assert Setup(batch_size=1, seq_len=O.GPU_BOUND_TOKENS - 1).graphs()
    assert not Setup(batch_size=1, seq_len=O.GPU_BOUND_TOKENS).graphs()
    assert replace(long, cuda_graphs="on", grad_checkpointing="on").graphs()
    assert not replace(short, cuda_graphs="off").graphs()
    for blocker in ({"lora_dropout": 0.05}, {"loss_impl": "standard"}, {"grad_checkpointing": "offload"},
                    {"offload_lm_head": True}, {"packing": True}, {"mlp_tile_tokens": 512},
                    {"compute_dtype": "fp16"}, {"stack": "hf"}):
        for value in ("auto", "on"):
            assert not replace(short, cuda_graphs=value, **blocker).graphs(), (blocker, value)
    m = resolve_model("llama-3.1-8b")
    pool = estimate(m, short).component("CUDA graph pool")
    assert pool > 0 and estimate(m, replace(short, cuda_graphs="off")).component("CUDA graph pool") == 0
    assert estimate(m, long).component("CUDA graph pool") == 0


def test_true_and_false_still_mean_on_and_off(model_dir, data, tmp_path):
    for given, means in ((True, "on"), (False, "off"), ("auto", "auto")):
        assert make_cfg(model_dir, data, tmp_path / "c", train={"cuda_graphs": given}).train.cuda_graphs == means
    with pytest.raises(Exception, match="cuda_graphs"):
        make_cfg(model_dir, data, tmp_path / "c", train={"cuda_graphs": "sometimes"})


def test_auto_turns_off_quietly_where_on_says_why(model_dir, data, tmp_path, capsys):
    """On this CPU machine: auto records off and says nothing; on records off and says why."""
    for value, said in (("auto", False), ("on", True)):
        run = setup(make_cfg(model_dir, data, tmp_path / value, train={"cuda_graphs": value}))
        assert run.ctx.graphs is None and run.cfg.train.cuda_graphs == "off"
        said_now = "".join(capsys.readouterr())
        assert ("train.cuda_graphs: off, because it needs a CUDA device" in said_now) == said


def test_the_first_step_warms_the_graphs_up(model_dir, data, tmp_path):
    """The gradients a graph accumulates into are made on the first micro-batch (zeros, as the first backward would),
    so a shape's warm-up pass is its first micro-batch and its capture the second: graphs replay from the third."""
    log = []
    run = setup(make_cfg(model_dir, data, tmp_path / "w", train={"max_steps": 3, "micro_batch_size": 2},
                         data={"group_by_length": False, "max_seq_length": 64}), quiet=True)
    g = run.ctx.graphs = GR.MicroBatchGraphs(run.ctx.model, run.ctx.params, capture=_stand_in(log))
    assert all(p.grad is None for p in run.ctx.params)
    loop(run)
    assert g.captures == 1 and log.count("capture") == 1, log  # every micro-batch pads to one bucket (64 -> 256)
    assert log.count("replay") == 2  # the check's replay at the capture (step 2), and step 3's


def test_graphed_layers_take_liger_fusions_without_its_losses(monkeypatch, model_dir):
    """fuse_with_liger asks liger-kernel (as transformers' Trainer does) for its RMSNorm, RoPE and SwiGLU on the base
    model, never its losses (qlorafit's loss stays); SwiGLU only where every layer's MLP is dense; nothing where
    liger does not know the model type or is not installed. A stand-in liger records the call."""
    import sys
    import types

    from transformers import AutoModelForCausalLM

    from qlorafit.runtime.model import fuse_with_liger

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert fuse_with_liger(model) is False  # not installed here
    calls = []
    pkg, mp = types.ModuleType("liger_kernel.transformers"), types.ModuleType("liger_kernel.transformers.monkey_patch")
    pkg._apply_liger_kernel_to_instance = lambda **kw: calls.append(kw)
    mp.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": None}
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", pkg)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", mp)
    assert fuse_with_liger(model) is True
    (kw,) = calls
    assert kw["model"] is model and kw["rope"] and kw["rms_norm"] and kw["swiglu"]
    assert not kw["cross_entropy"] and not kw["fused_linear_cross_entropy"]
    model.model.layers[0].mlp = torch.nn.Identity()  # not a dense gate/up/down MLP (as a MoE block)
    assert fuse_with_liger(model) and calls[-1]["swiglu"] is False
    mp.MODEL_TYPE_TO_APPLY_LIGER_FN = {}
    with pytest.warns(UserWarning, match="does not patch"):
        assert fuse_with_liger(model) is False and len(calls) == 2


def test_the_estimate_sizes_a_graphed_micro_batch_at_its_padded_length():
    """Graphed micro-batches are right-padded to a multiple of options.GRAPH_BUCKET_TOKENS (the runtime's padding
    and the estimator read the same declaration): 2,000 positions are estimated as 2,048, ungraphed as 2,000."""
    from dataclasses import replace

    from qlorafit.core import options as O
    from qlorafit.core.catalog import resolve_model
    from qlorafit.core.estimate import estimate
    from qlorafit.core.setup import Setup

    m = resolve_model("llama-3.1-8b")
    short = Setup(batch_size=1, seq_len=2000)
    assert short.graphs() and O.graph_bucket(2000) == 2048
    e = estimate(m, short)
    assert e.peak_bytes == estimate(m, replace(short, seq_len=2048)).peak_bytes and e.setup.seq_len == 2000
    off = replace(short, cuda_graphs="off")
    assert estimate(m, off).peak_bytes < estimate(m, replace(off, seq_len=2048)).peak_bytes
    near = Setup(batch_size=1, seq_len=O.GPU_BOUND_TOKENS - 100)  # padded to the threshold: still graphed, as it runs
    assert near.graphs() and estimate(m, near).component("CUDA graph pool") > 0


def test_the_graphed_pass_attends_causally_without_a_mask_tensor(monkeypatch, model_dir):
    """Inside causal_attention every layer gets no mask tensor (SDPA's is_causal kernel), even where transformers
    would build one because a stream is capturing (simulated here: is_tracing true; transformers 5.17 builds it there,
    later versions only with a padding mask), and the hidden states are the model's own. A sliding-window model keeps its mask: the no-mask pass would compute something else there."""
    import transformers.masking_utils as MU
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.integrations import sdpa_attention as SA

    seen = []
    real = SA.sdpa_attention_forward

    def spy(module, q, k, v, attention_mask, **kw):
        seen.append(attention_mask)
        return real(module, q, k, v, attention_mask, **kw)
    monkeypatch.setattr(SA, "sdpa_attention_forward", spy)  # what causal_attention registers
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    x = torch.randn(2, 12, model.config.hidden_size)
    ref = model.model(inputs_embeds=x).last_hidden_state
    monkeypatch.setattr(MU, "is_tracing", lambda *a, **k: True)  # as while capturing: the mask is materialized
    with GR.causal_attention(model):
        assert model.config._attn_implementation == GR.CAUSAL
        out = model.model(inputs_embeds=x).last_hidden_state
    assert model.config._attn_implementation == "sdpa"  # restored
    assert len(seen) == model.config.num_hidden_layers and all(m is None for m in seen)
    torch.testing.assert_close(out, ref)

    cfg = AutoConfig.for_model("mistral", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=64, sliding_window=4)
    sliding = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    assert not GR.causal_only(sliding.config.get_text_config())
    x = torch.randn(1, 12, 32)
    ref = sliding.model(inputs_embeds=x).last_hidden_state
    with GR.causal_attention(sliding):
        assert sliding.config._attn_implementation == "sdpa"
        torch.testing.assert_close(sliding.model(inputs_embeds=x).last_hidden_state, ref)
    sliding.config._attn_implementation = GR.CAUSAL  # what the guard prevents: the window is lost
    assert not torch.allclose(sliding.model(inputs_embeds=x).last_hidden_state, ref, atol=1e-4)
    sliding.config._attn_implementation = "sdpa"
    assert not GR.causal_only(sliding.config, 12) and not GR.causal_only(sliding.config, 4)  # the window binds
    sliding.config.sliding_window = 16  # longer than the row: it cannot bind, and the causal kernel is exact
    ref = sliding.model(inputs_embeds=x).last_hidden_state
    assert GR.causal_only(sliding.config, 12) and not GR.causal_only(sliding.config, 16)
    with GR.causal_attention(sliding, 12):
        assert sliding.config._attn_implementation == GR.CAUSAL
        torch.testing.assert_close(sliding.model(inputs_embeds=x).last_hidden_state, ref)
    assert sliding.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("where", ["capture", "replay"])
def test_an_oom_in_a_capture_or_a_replay_is_recovered_in_place(model_dir, data, tmp_path, where):
    """An OOM while a shape is captured, or while a graph replays, goes to the guard like any other: the micro-batch
    is halved, the graphs are dropped (their pool with them) and the smaller shape is captured in its turn. The run
    completes with every sample trained once and the adapter of the run that never ran out of memory."""
    from test_train_helpers import ledger_ids

    steps = {"max_steps": 3, "micro_batch_size": 4, "grad_accum": 2, "grad_checkpointing": "on"}
    runs = {}
    for name in ("eager", where):
        out = tmp_path / name
        run = setup(make_cfg(model_dir, data, out, train=steps, data={"group_by_length": False}), quiet=True)
        if name != "eager":
            log, fired = [], []
            inner = _stand_in(log)

            def capture(fn, pool, inner=inner, log=log, fired=fired):
                if where == "capture" and not fired:
                    fired.append("capture")
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
                replayable, out_, pool = inner(fn, pool)
                replay = replayable.replay

                def flaky():  # the second replay of the run (the first is the capture's own check)
                    if where == "replay" and log.count("replay") == 1 and not fired:
                        fired.append("replay")
                        raise torch.OutOfMemoryError("CUDA out of memory (injected in a replay)")
                    replay()
                replayable.replay = flaky
                return replayable, out_, pool
            run.ctx.graphs = GR.MicroBatchGraphs(run.ctx.model, run.ctx.params, capture=capture)
        loop(run)
        runs[name] = out
    assert fired == [where]
    rec = [e for e in read_jsonl(runs[where] / "events.jsonl") if e["kind"] == "oom_recovery"]
    assert len(rec) == 1 and (rec[0]["old_micro_batch"], rec[0]["new_micro_batch"]) == (4, 2), rec
    assert sorted(ledger_ids(runs[where])) == sorted(ledger_ids(runs["eager"]))
    assert len(set(ledger_ids(runs[where]))) == len(ledger_ids(runs[where]))  # every sample once
    a, b = adapter(runs["eager"] / "final"), adapter(runs[where] / "final")
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-4)


def test_liger_kernels_are_sized_where_they_run():
    """In graphed layers liger-kernel's RMSNorm keeps a compute-dtype input and an fp32 rstd per row (not the fp32
    input) and its SwiGLU keeps gate and up (not act(gate)): the estimate counts that exactly where the runtime fuses
    (liger installed, graphs on, a model type liger patches; SwiGLU only on dense MLPs). Against session 9's measured
    runs with checkpointing off (H200, Llama-3-8B, 1 x 2,048 and 2 x 4 x 512 in 12.3 GiB): within +8 % with the
    kernels counted, where without them it was 30 % over."""
    import dataclasses
    import json
    from pathlib import Path

    from qlorafit.core import catalog
    from qlorafit.core import options as O
    from qlorafit.core.estimate import estimate, layer_activation_bytes_per_token
    from qlorafit.core.setup import Setup, setup_from_config

    m = catalog.resolve_model("llama-3.1-8b")
    s = Setup(batch_size=1, seq_len=2048, lora_dropout=0.0, grad_checkpointing="off")
    on, off = dataclasses.replace(s, liger=True), dataclasses.replace(s, liger=False)
    saved = m.norms_per_layer * (4 * m.hidden_size - (2 * m.hidden_size + 4)) + 2 * m.intermediate_size
    assert layer_activation_bytes_per_token(m, off) - layer_activation_bytes_per_token(m, on) == saved
    for same in (dataclasses.replace(on, seq_len=16384),             # graphs off: compiled layers, no liger
                 dataclasses.replace(on, lora_dropout=0.05)):        # dropout blocks graphs
        assert not same.graphs()
        assert layer_activation_bytes_per_token(m, same) == layer_activation_bytes_per_token(
            m, dataclasses.replace(same, liger=False))
    other = dataclasses.replace(m, model_type="gpt_bigcode")        # a type liger does not patch
    assert other.model_type not in O.LIGER_MODEL_TYPES
    assert layer_activation_bytes_per_token(other, on) == layer_activation_bytes_per_token(other, off)
    moe = catalog.resolve_model("qwen3-30b-a3b")                    # norms fused, routed experts' MLPs not
    assert 0 < layer_activation_bytes_per_token(moe, off) - layer_activation_bytes_per_token(moe, on) < \
        moe.norms_per_layer * 2 * moe.hidden_size + 8

    rows = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "versus-h200-2026-11-30-s9-call3.jsonl"
    checked = 0
    for line in rows.read_text().splitlines():
        r = json.loads(line)
        if r.get("contender") != "qlorafit-plan" or r["config"] not in ("c1", "c2"):
            continue
        q = r["qlorafit_config"]
        cfg = C.from_dict({"train": q["config"], "data": {"max_seq_length": {"c1": 512, "c2": 2048}[r["config"]]},
                           "lora": {"dropout": 0.0},
                           "model": {k: v for k, v in q["model"].items() if k != "name_or_path"}})
        assert cfg.train.grad_checkpointing == "off"
        base = setup_from_config(cfg)
        fused = estimate(m, dataclasses.replace(base, liger=True), r["context_bytes"]).peak_bytes
        plain = estimate(m, dataclasses.replace(base, liger=False), r["context_bytes"]).peak_bytes
        assert -0.02 <= fused / r["used_peak_steps"] - 1 <= 0.08, (r["config"], fused / r["used_peak_steps"])
        assert plain / r["used_peak_steps"] - 1 > 0.25
        checked += 1
    assert checked == 2


def test_liger_fuses_only_the_model_types_the_estimate_counts(monkeypatch, model_dir):
    """fuse_with_liger fuses a model type only where options.LIGER_MODEL_TYPES lists it (the estimate counts it
    there), and says so where the installed liger-kernel does not patch a listed type."""
    import sys
    import types

    from transformers import AutoModelForCausalLM

    from qlorafit.core import options as O
    from qlorafit.runtime.model import fuse_with_liger

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    calls = []
    pkg, mp = types.ModuleType("liger_kernel.transformers"), types.ModuleType("liger_kernel.transformers.monkey_patch")
    pkg._apply_liger_kernel_to_instance = lambda **kw: calls.append(kw)
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", pkg)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", mp)
    mp.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": None}
    monkeypatch.setattr(O, "LIGER_MODEL_TYPES", ("mistral",))  # liger knows llama, the estimate does not count it
    assert fuse_with_liger(model) is False and not calls
    monkeypatch.setattr(O, "LIGER_MODEL_TYPES", ("llama",))
    mp.MODEL_TYPE_TO_APPLY_LIGER_FN = {}                          # an older liger without llama
    with pytest.warns(UserWarning, match="does not patch 'llama'"):
        assert fuse_with_liger(model) is False
    mp.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": None}
    assert fuse_with_liger(model) is True and len(calls) == 1


def test_liger_fuses_this_model_and_leaves_the_classes_of_later_ones(monkeypatch, model_dir):
    """liger's apply functions also replace the modeling module's classes (RMSNorm, MLP) for every model built later
    in the process (a later compiled model then failed in Dynamo on a GPU): fuse_with_liger puts the classes back and
    keeps module functions (RoPE, looked up at each call). A stand-in liger patches as the real one does."""
    import sys
    import types

    from transformers import AutoModelForCausalLM
    from transformers.models.llama import modeling_llama as ML

    from qlorafit.runtime.model import fuse_with_liger

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    norm_cls, mlp_cls, rope = ML.LlamaRMSNorm, ML.LlamaMLP, ML.apply_rotary_pos_emb

    class FusedNorm(torch.nn.Module):
        pass

    def fused_rope(*args, **kwargs):
        return rope(*args, **kwargs)

    def apply(model, **kw):  # what liger's apply_liger_kernel_to_llama does with a model given
        ML.LlamaRMSNorm, ML.LlamaMLP, ML.apply_rotary_pos_emb = FusedNorm, FusedNorm, fused_rope
        model.model.norm.fused = True
    pkg, mp = types.ModuleType("liger_kernel.transformers"), types.ModuleType("liger_kernel.transformers.monkey_patch")
    pkg._apply_liger_kernel_to_instance = apply
    mp.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": None}
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", pkg)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", mp)
    monkeypatch.setattr(ML, "apply_rotary_pos_emb", rope)  # undone after the test
    assert fuse_with_liger(model) is True
    assert model.model.norm.fused  # this instance is fused
    assert ML.LlamaRMSNorm is norm_cls and ML.LlamaMLP is mlp_cls  # later models are built as before
    assert ML.apply_rotary_pos_emb is fused_rope  # the function this instance's attention calls stays
