"""The planner and the throughput model: torch-free, fast, the effective batch fixed, sized for the longest sample,
and a YAML that the train config loader accepts. GPU checks of the speed ranking live in the benchmarks."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from qlorafit.core import config
from qlorafit.core.catalog import get_gpu, resolve_model
from qlorafit.cli import main
from qlorafit.errors import UserError
from qlorafit.core.estimate import Setup, estimate
from qlorafit.core.plan import THROUGHPUT_ERROR, Lengths, PlanRequest, plan, plan_config
from qlorafit.core.sizes import GIB
from qlorafit.core.throughput import Calibration, load_calibration, predict

SHAPE = resolve_model("llama-3.1-8b")
GPU = get_gpu("rtx4090")


def _req(**kw) -> PlanRequest:
    kw.setdefault("budget_bytes", 24 * GIB)
    kw.setdefault("gpu", GPU)
    return PlanRequest(**kw)


def test_imports_and_plans_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import qlorafit.core.plan, qlorafit.core.throughput, qlorafit.commands.plan\n"
        "from qlorafit.cli import main\n"
        "sys.exit(main(['plan', 'llama-3.1-8b', '--gpu', 'rtx4090', '--lengths', '2048,1500,300', '--json']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["fits"] is True


@pytest.mark.parametrize("budget_gib,batch", [(10, 16), (16, 12), (24, 32), (80, 64)])
def test_effective_batch_is_kept_and_chosen_fits(budget_gib, batch):
    r = plan(SHAPE, _req(budget_bytes=budget_gib * GIB, max_seq_length=2048, effective_batch=batch, packing=(False,)))
    assert r.chosen is not None
    assert all(c.setup.batch_size * c.grad_accum == batch for c in r.ranked)
    est = estimate(SHAPE, r.chosen.setup)
    assert est.peak_bytes <= budget_gib * GIB * (1 - 0.05)
    assert r.chosen.setup.seq_len == 2048
    best = max(c.score for c in r.ranked)  # the chosen is the fastest, or a roomier one within the model's error
    assert r.ranked[0].score >= best * (1 - THROUGHPUT_ERROR)
    scores = [round(c.score, 6) for c in r.ranked[1:]]
    assert scores == sorted(scores, reverse=True)  # the runner-ups by predicted speed


def test_packed_rows_keep_the_batch_in_tokens():
    r = plan(SHAPE, _req(max_seq_length=2048, effective_tokens=64 * 1024, lengths=Lengths(2048, 1500, 400),
                         packing=(True,)))
    for c in r.ranked:
        assert c.setup.packing and c.setup.seq_len == 2048  # packed rows are always full
        assert c.rows_per_step * 2048 * 0.97 == pytest.approx(64 * 1024, rel=0.05)


def test_sized_for_the_longest_sample_not_the_mean():
    # same mean and p99; one sample of 4096 tokens must change the plan and be what the plan is sized for
    common = dict(budget_bytes=12 * GIB, max_seq_length=4096, effective_batch=16, packing=(False,))
    short = plan(SHAPE, _req(lengths=Lengths(max=600, p99=500, mean=300), **common))
    long = plan(SHAPE, _req(lengths=Lengths(max=4096, p99=500, mean=300), **common))
    assert short.chosen.setup.seq_len == 600 and long.chosen.setup.seq_len == 4096
    key = lambda c: (c.setup.batch_size, c.setup.grad_checkpointing, c.setup.loss_impl, c.setup.offload_embedding)
    assert key(short.chosen) != key(long.chosen)
    # the short plan would not survive the long sample: that is the OOM hours into a run that this prevents
    at_max = estimate(SHAPE, replace(short.chosen.setup, seq_len=4096)).peak_bytes
    assert at_max > long.usable_bytes
    assert estimate(SHAPE, long.chosen.setup).peak_bytes <= long.usable_bytes


def test_nothing_fits_gives_the_smallest_budget_and_ways_out():
    # 7 GiB at 8192 tokens: the smallest configuration (everything offloaded) needs ~7.5 GiB; a shorter length fits
    # (below ~6.5 GiB none would: loading alone holds the 16-bit embedding and lm_head on the GPU)
    r = plan(SHAPE, _req(budget_bytes=int(7 * GIB), max_seq_length=8192))
    assert r.chosen is None and r.ranked == ()
    assert r.min_budget_bytes > 7 * GIB
    # the smallest budget is tight: it fits there, and not 64 MiB below it
    assert plan(SHAPE, _req(budget_bytes=r.min_budget_bytes, max_seq_length=8192)).chosen is not None
    assert plan(SHAPE, _req(budget_bytes=r.min_budget_bytes - 64 * 1024**2, max_seq_length=8192)).chosen is None
    changes = " | ".join(w.change for w in r.ways_out)
    assert "max_seq_length" in changes and "rank" in changes and "offloaded checkpointing" in changes
    assert "8-bit optimizer" in changes and "lm_head in host RAM (already" in changes
    for w in r.ways_out:
        assert w.saves_bytes > 0
        if "already" not in w.change:
            assert w.peak_bytes == r.smallest.peak_bytes - w.saves_bytes
            assert w.fits == (w.peak_bytes <= r.usable_bytes)
    seq = next(w for w in r.ways_out if w.change.startswith("max_seq_length"))
    assert seq.fits and r.ways_out[0] == seq  # a shorter max_seq_length is the way out here, listed first
    # far too small: no single lever is enough, and the message says what all of them together would need
    tiny = plan(SHAPE, _req(budget_bytes=3 * GIB, max_seq_length=4096))
    assert not any(w.fits for w in tiny.ways_out)
    assert any(w.change.startswith("all of these together") for w in tiny.ways_out)


def test_plan_searches_the_whole_space():
    """Every micro-batch x checkpointing x optimizer x loss x offload x packing combination is sized (how fast that
    is: benchmarks/core_speed.py)."""
    r = plan(SHAPE, _req(max_seq_length=2048, effective_batch=64, lengths=Lengths(2048, 1500, 400)))
    assert r.n_candidates > 500


def test_plan_config_for_train_plan_auto():
    cfg = config.Config()
    cfg.data.max_seq_length = 2048
    cfg.train.micro_batch_size, cfg.train.grad_accum = 4, 4
    out = plan_config(cfg, SHAPE, 16 * GIB, length_stats=Lengths(2048, 1200, 500), gpu=GPU)
    assert out.train.micro_batch_size * out.train.grad_accum == 16
    assert out.data.packing == cfg.data.packing and out.data.max_seq_length == 2048
    assert cfg.train.micro_batch_size == 4  # the input is not changed
    from qlorafit.core.plan import setup_from_config
    assert estimate(SHAPE, setup_from_config(out)).peak_bytes <= 16 * GIB * 0.95
    with pytest.raises(UserError, match="smallest budget"):
        plan_config(cfg, SHAPE, 4 * GIB)


def test_yaml_loads_and_matches_the_plan(tmp_path, capsys):
    out = tmp_path / "sub" / "plan.yaml"
    rc = main(["plan", "llama-3.1-8b", "--gpu", "rtx4090", "--max-seq-length", "2048", "--batch-size", "32",
               "--lengths", "2048,1500,600", "--rank", "32", "--targets", "all-linear", "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    cfg = config.load(str(out))
    ch = res["chosen"]
    assert (cfg.train.micro_batch_size, cfg.train.grad_accum) == (ch["micro_batch_size"], ch["grad_accum"])
    assert cfg.train.grad_checkpointing == ch["setup"]["grad_checkpointing"]
    assert cfg.train.optimizer == ch["setup"]["optimizer"] and cfg.train.loss_impl == ch["setup"]["loss_impl"]
    assert cfg.data.packing == ch["setup"]["packing"] and cfg.model.offload_embedding == ch["setup"]["offload_embedding"]
    assert cfg.model.offload_lm_head == ch["setup"]["offload_lm_head"]
    assert cfg.lora.r == 32 and cfg.lora.targets == ["all-linear"] and cfg.data.max_seq_length == 2048
    assert cfg.model.name_or_path == "llama-3.1-8b"
    assert not list(out.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_text_output_explains_the_choice(capsys):
    assert main(["plan", "llama-3.1-8b", "--gpu", "rtx4090", "--max-seq-length", "4096", "--lengths", "4096,900,300"]) == 0
    text = capsys.readouterr().out
    assert "sized for the longest sample (4096 tokens" in text
    for word in ("micro_batch_size", "grad_checkpointing", "optimizer", "loss_impl", "runner-ups", "tokens/s"):
        assert word in text


@pytest.mark.parametrize("argv,needle", [
    (["--gpu", "rtx9999"], "unknown GPU"),
    (["--budget", "lots"], "cannot read"),
    (["--gpu", "t4", "--lengths", "10,20"], "--lengths"),
    (["--gpu", "t4", "--margin", "0.9"], "--margin"),
    (["--gpu", "t4", "--losses", "turbo"], "--losses"),
    (["--gpu", "t4", "--rank", "0"], "--rank"),
])
def test_cli_errors_are_one_clear_line(argv, needle, capsys):
    assert main(["plan", "llama-3.1-8b", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qlorafit plan: error:") and needle in err
    assert "\n" not in err and "Traceback" not in err


def test_nothing_fits_cli(capsys):
    assert main(["plan", "llama-3.1-70b", "--gpu", "rtx4090", "--max-seq-length", "2048"]) == 2
    err = capsys.readouterr().err
    assert "nothing fits" in err and "smallest budget that fits" in err and "saves" in err


def test_no_budget_without_gpu_says_what_to_do(capsys, monkeypatch):
    import qlorafit.commands.plan as cmd
    monkeypatch.setattr(cmd, "_detect_cuda", lambda: (_ for _ in ()).throw(UserError("no CUDA GPU detected: give --gpu")))
    assert main(["plan", "llama-3.1-8b"]) == 2
    assert "--gpu" in capsys.readouterr().err


def test_device_names_map_to_the_catalogue():
    from qlorafit.core.catalog import find_gpu

    def gpu_from_device_name(name, total):
        return find_gpu(total, name)

    assert gpu_from_device_name("NVIDIA GeForce RTX 4090", 24 * GIB).name == "rtx4090"
    assert gpu_from_device_name("NVIDIA A100-SXM4-80GB", 80 * GIB).name == "a100-80gb"
    assert gpu_from_device_name("NVIDIA A100-PCIE-40GB", 40 * GIB).name == "a100-40gb"
    assert gpu_from_device_name("NVIDIA H100 80GB HBM3", 80 * GIB).name == "h100"
    assert gpu_from_device_name("Tesla T4", 15 * GIB).name == "t4"
    assert gpu_from_device_name("Some Card", 8 * GIB) is None
    # whole words: an unlisted card is not captured by a listed one whose name it contains
    assert gpu_from_device_name("NVIDIA GeForce RTX 3090 Ti", 24 * GIB) is None
    assert gpu_from_device_name("NVIDIA L40", 45 * GIB).name == "l40"  # listed since session 10; not the L4
    assert gpu_from_device_name("NVIDIA L20", 45 * GIB) is None
    assert gpu_from_device_name("NVIDIA L4", 22 * GIB).name == "l4"
    assert gpu_from_device_name("NVIDIA L40S", 45 * GIB).name == "l40s"
    assert gpu_from_device_name("NVIDIA A10G", 22 * GIB).name == "a10"
    assert find_gpu(80 * GIB).name == "a100-80gb" and find_gpu(5 * GIB) is None  # by total capacity alone


# --- the throughput model ---------------------------------------------------------------------------------------

def test_throughput_follows_the_known_trade_offs():
    s = Setup(seq_len=1024, cuda_graphs="off")  # the trade-offs of the compiled layers (graphs: tests/test_graphs.py)
    tps = lambda **kw: predict(SHAPE, replace(s, **kw), GPU, grad_accum=16 // kw.get("batch_size", 1)).tokens_per_s
    # larger micro-batches amortize dequantization and launches
    assert tps(batch_size=1) < tps(batch_size=2) < tps(batch_size=8)
    # recompute costs roughly a forward: 20-40% slower than no checkpointing; offload a little more
    assert 0.6 < tps(grad_checkpointing="on") / tps(grad_checkpointing="off") < 0.8
    assert tps(grad_checkpointing="offload") <= tps(grad_checkpointing="on")
    assert tps(loss_impl="fused") >= tps(loss_impl="chunked")
    # a faster card is faster
    assert predict(SHAPE, s, get_gpu("h100"), 16).tokens_per_s > 3 * predict(SHAPE, s, get_gpu("t4"), 16).tokens_per_s


def test_calibration_file_overrides_and_rejects_unknown_keys(tmp_path):
    p = tmp_path / "cal.json"
    p.write_text(json.dumps({"default": {"matmul_efficiency": 0.5}, "gpus": {"h100": {"bandwidth_efficiency": 0.8}}}))
    c = load_calibration("h100", p)
    assert (c.matmul_efficiency, c.bandwidth_efficiency, c.source) == (0.5, 0.8, str(p))
    assert load_calibration("rtx4090", p).bandwidth_efficiency == 0.7
    s = Setup()
    assert predict(SHAPE, s, GPU, 8, cal=load_calibration("rtx4090", p)).tokens_per_s > predict(SHAPE, s, GPU, 8).tokens_per_s
    p.write_text(json.dumps({"default": {"matmul_eff": 0.5}}))
    with pytest.raises(UserError, match="matmul_eff"):
        load_calibration(None, p)
    p.write_text("{oops")
    with pytest.raises(UserError, match="malformed JSON at line 1"):
        load_calibration(None, p)


def test_plan_tiles_the_mlp_when_only_tiling_fits():
    from qlorafit.core.plan import PlanRequest, plan
    from qlorafit.core.sizes import GIB
    shape = resolve_model("llama-3.1-8b")
    base = Setup(lora_r=32, lora_targets=("all-linear",), lora_dropout=0.0)
    res = plan(shape, PlanRequest(budget_bytes=24 * GIB, max_seq_length=98304, effective_batch=1, base=base))
    assert res.chosen.setup.mlp_tile_tokens > 0
    short = plan(shape, PlanRequest(budget_bytes=24 * GIB, max_seq_length=2048, effective_batch=8, base=base))
    assert short.chosen.setup.mlp_tile_tokens == 0  # rows no longer than a tile are never tiled


def test_plan_streams_lm_head_only_when_that_is_what_fits():
    """Llama-3-8B, 8 sequences of 8,192 per step: long enough that the training steps, not loading (which still holds
    the 16-bit head on the GPU), set the peak, so moving the head out decides what fits."""
    common = dict(max_seq_length=8192, effective_batch=8, packing=(False,))
    roomy = plan(SHAPE, _req(budget_bytes=24 * GIB, **common))
    assert roomy.chosen is not None and not roomy.chosen.setup.offload_lm_head
    assert not config_of(roomy).model.offload_lm_head
    # a budget that nothing fits without the head in host RAM, and something fits with it
    without = plan(SHAPE, _req(budget_bytes=7 * GIB, offload_lm_head=(False,), **common))
    tight = without.min_budget_bytes - 64 * 1024**2
    assert plan(SHAPE, _req(budget_bytes=tight, offload_lm_head=(False,), **common)).chosen is None
    r = plan(SHAPE, _req(budget_bytes=tight, **common))
    assert r.chosen is not None and all(c.setup.offload_lm_head for c in r.ranked)
    assert r.chosen.setup.loss_impl == "chunked"  # tried once: the head in host RAM is always streamed
    assert config_of(r).model.offload_lm_head is True
    assert any(x.startswith("offload_lm_head on: off would need") for x in r.reasons)
    # nothing fits at all: the lever shows up among the ways out, with its saving
    none = plan(SHAPE, _req(budget_bytes=4 * GIB, offload_lm_head=(False,), **common))
    w = next(w for w in none.ways_out if w.change.startswith("lm_head in host RAM"))
    assert 0.8 * 128256 * 4096 * 2 < w.saves_bytes <= 128256 * 4096 * 2  # less the stream buffers if at the loss
    # the hf stack cannot stream the head: never tried there
    hf = plan(SHAPE, _req(budget_bytes=24 * GIB, base=Setup(stack="hf"), **common))
    assert not any(c.setup.offload_lm_head for c in hf.ranked)


def config_of(r):
    from qlorafit.core.plan import apply_to_config
    return apply_to_config(config.Config(), r.chosen)


def test_throughput_charges_the_head_copy():
    s = Setup(batch_size=2, seq_len=512, cuda_graphs="off")
    plain = predict(SHAPE, s, GPU, 4)
    streamed = predict(SHAPE, replace(s, offload_lm_head=True), GPU, 4)
    copy_s = 4 * 128256 * 4096 * 2 / 20e9  # the head over PCIe once per micro-batch
    extra = streamed.step_s - plain.step_s
    assert 0 < extra <= copy_s * 1.05  # the side stream hides part of the copy behind the loss's matmuls
    assert streamed.parts_s["offload"] > plain.parts_s["offload"]


def test_host_time_overlaps_the_gpu_and_slows_only_small_micro_batches():
    """The host (Python + dispatch per kernel) runs ahead of the GPU: a micro-batch takes max(GPU, host). Measured on
    an H200 (benchmarks/plan_check.py): a 1B model at 1 x 2,048 tokens ran 3x below its GPU-bound speed."""
    one_b = resolve_model("llama-3.2-1b")
    h200 = get_gpu("h200")
    fast_gpu = dict(matmul_efficiency=0.8, attention_efficiency=0.7, bandwidth_efficiency=0.5)
    gpu_only = Calibration(**fast_gpu, host_s_per_kernel=0.0)
    host = Calibration(**fast_gpu, host_s_per_kernel=4e-5)
    small, large = (Setup(batch_size=b, seq_len=2048, cuda_graphs="off") for b in (1, 16))
    tps = lambda s, acc, cal: predict(one_b, s, h200, acc, cal=cal).tokens_per_s  # noqa: E731
    slow_small = tps(small, 16, host) / tps(small, 16, gpu_only)
    slow_large = tps(large, 1, host) / tps(large, 1, gpu_only)
    assert slow_small < 0.8 and slow_large == 1.0  # the big micro-batch keeps the GPU the bottleneck
    t = predict(one_b, small, h200, 16, cal=host)
    assert t.parts_s["launches"] > t.parts_s["matmuls"]  # the step is host-bound: the wait shows as launches


def test_calibration_comes_from_the_package_not_the_working_directory(tmp_path, monkeypatch):
    """A stray benchmarks/results/throughput_calibration.json where the command runs changes nothing."""
    shipped = load_calibration("h200")
    stray = tmp_path / "benchmarks" / "results" / "throughput_calibration.json"
    stray.parent.mkdir(parents=True)
    stray.write_text('{"default": {"matmul_efficiency": 0.01}}')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QLORAFIT_THROUGHPUT_CALIBRATION", raising=False)
    assert load_calibration("h200") == shipped and shipped.matmul_efficiency != 0.01
    assert load_calibration("h200", stray).matmul_efficiency == 0.01  # named, it is read


def test_plan_ranks_with_the_shipped_calibration_when_none_is_given():
    r = plan(SHAPE, PlanRequest(budget_bytes=24 * GIB, max_seq_length=1024, gpu=GPU))
    assert r.request.calibration is not None and "not yet calibrated" not in r.request.calibration.source
    assert r.request.calibration.host_s_per_kernel > 0


def test_compile_is_modelled_for_speed_not_memory_and_chosen_only_when_allowed():
    s = Setup(batch_size=1, seq_len=2048, compile=False, cuda_graphs="off")
    h200 = get_gpu("h200")
    assert estimate(SHAPE, s).peak_bytes == estimate(SHAPE, replace(s, compile=True)).peak_bytes
    cal = load_calibration("h200")
    assert predict(SHAPE, replace(s, compile=True), h200, 1, cal=cal).tokens_per_s > \
        1.1 * predict(SHAPE, s, h200, 1, cal=cal).tokens_per_s  # host-bound at 1 x 2,048 (measured 1.3x)
    req = PlanRequest(budget_bytes=24 * GIB, max_seq_length=2048, effective_batch=4, gpu=h200, base=s)
    assert plan(SHAPE, req).chosen.setup.compile is False  # the user's choice (off) is kept by default
    r = plan(SHAPE, replace(req, compile=(False, True)))
    assert r.chosen.setup.compile is True
    assert any(line.startswith("compile on") for line in r.reasons)
    cfg = plan_config(config.from_dict({"train": {"compile": True}}, "t"), SHAPE, 24 * GIB, gpu=h200)
    assert cfg.train.compile is True


def test_plan_cli_compile_auto_writes_it_into_the_yaml(tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    # 4 x 4,096: micro-batches past train.cuda_graphs' reach, where compiled layers are the fast path
    assert main(["plan", "llama-3.1-8b", "--gpu", "h200", "--batch-size", "4", "--seq", "4096", "--compile", "auto",
                 "--out", str(out)]) == 0
    assert config.load(str(out)).train.compile is True
    assert "compile on" in capsys.readouterr().out


def _fit_throughput():
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fit_throughput
    return fit_throughput


def test_compile_fit_reproduces_the_versus_measurements():
    """The shipped calibration's compile terms against the compiled qlorafit rows they were fitted on (H200,
    benchmarks/results/versus-h200-2026-11-29-call1.jsonl, median tokens/s of 5 alternating steps; less the one row
    whose compiled recompute the runtime no longer runs): the errors the calibration file states, within the
    tolerance we hold the speed model to (median |log error| <= 0.10, worst <= 0.20, i.e. 22 %); with compile
    ignored by the model (factors 1.0) the same rows miss it."""
    import statistics
    from pathlib import Path
    ft = _fit_throughput()
    shipped = json.loads((Path(ft.ROOT) / "src" / "qlorafit" / "assets" / "throughput_calibration.json").read_text())
    stated = shipped["compile_fit"]
    rows = ft.compile_fit_rows(tuple(stated["files"]))
    assert len(rows) >= 5 and {r["config"] for r in rows} >= {"c1", "c2", "c3"}
    cal = load_calibration("h200")
    errs = [abs(e) for e in ft.versus_errors(rows, cal)]
    assert statistics.median(errs) <= stated["median_abs_log_error"] + 1e-3 <= 0.10 + 1e-3
    assert max(errs) <= stated["worst_abs_log_error"] + 1e-3 <= 0.20 + 1e-3
    uncompiled_model = replace(cal, compile_host_factor=1.0, compile_elementwise_factor=1.0)
    assert max(abs(e) for e in ft.versus_errors(rows, uncompiled_model)) > 0.20


def test_calibration_rows_from_before_compile_are_predicted_eager():
    """tests/fixtures/calibration.json was measured before train.compile existed: its rows map to eager Setups, so the
    eager fit is not silently re-read as compiled now that compile is the default."""
    ft = _fit_throughput()
    from calibrate import row_setup
    rows = json.loads((ft.ROOT / "tests" / "fixtures" / "calibration.json").read_text())["rows"]
    assert rows and not any(row_setup(r).compile for r in rows if "compile" not in r)


def test_plan_reaches_100k_tokens_on_a_24gib_card_with_every_long_context_lever():
    """Llama-3-8B, LoRA r32 on all linear layers, one row of 102,400 tokens, a 24 GiB card (context included): the
    planner alone picks the levers the long-context run needs (benchmarks/versus.py --ctx24 runs what it writes):
    layer inputs in host RAM, the MLP tiled, embedding and lm_head in host RAM with the streamed chunked loss. A row
    so long that even all of them cannot fit is refused with the ways out, not planned into an OOM."""
    base = Setup(lora_r=32, lora_targets=("all-linear",), lora_dropout=0.0)
    req = dict(budget_bytes=24 * GIB, effective_batch=1, base=base, gpu=get_gpu("h200"))
    for length in (102400, 109568):  # 109,568: what benchmarks/results/versus-h200-2026-11-29-call4.jsonl ran
        c = plan(SHAPE, PlanRequest(max_seq_length=length, **req)).chosen
        s = c.setup
        assert (c.grad_accum, s.batch_size, s.seq_len) == (1, 1, length)
        assert s.grad_checkpointing == "offload" and 0 < s.mlp_tile_tokens < length
        assert s.offload_embedding and s.offload_lm_head and s.loss_impl == "chunked"
        assert c.peak_bytes <= 0.95 * 24 * GIB
        assert estimate(SHAPE, s).peak_bytes == c.peak_bytes
    assert plan(SHAPE, PlanRequest(max_seq_length=160 * 1024, **req)).chosen is None


def test_plan_says_when_the_chosen_setup_runs_as_cuda_graphs(capsys):
    """The chosen line names what runs: CUDA graphs (with liger's fused layers where they are counted) for short
    micro-batches, compiled layers past the graphs' reach, never "compiled layers" for a graphed setup."""
    assert main(["plan", "llama-3.1-8b", "--gpu", "h200", "--budget", "16GiB", "--batch-size", "1", "--seq", "2048",
                 "--liger"]) == 0
    chosen = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("chosen:"))
    assert chosen.endswith("CUDA graphs with liger's fused layers") and "compiled" not in chosen
    assert main(["plan", "llama-3.1-8b", "--gpu", "h200", "--budget", "24GiB", "--batch-size", "1", "--seq", "16384",
                 "--no-liger"]) == 0
    chosen = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("chosen:"))
    assert chosen.endswith("compiled layers") and "graphs" not in chosen
