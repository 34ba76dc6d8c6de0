"""The training loop on CPU with real bitsandbytes NF4: loss falls, 1x8 == 8x1, NaN steps skipped, bad input named."""

import json

import pytest
import torch

from qlorafit.core import config as C
from qlorafit.errors import UserError
from qlorafit.runtime.train import setup, train
from test_train_helpers import adapter, assert_adapters_close, ledger_ids, make_cfg, read_jsonl, tiny_model_dir


def test_loss_falls_and_run_dir_is_complete(model_dir, data, tmp_path):
    out = tmp_path / "run"
    s = train(make_cfg(model_dir, data, out, train={"max_steps": 12, "lr": 2e-2}), quiet=True)
    assert s["last_loss"] < s["first_loss"] - 0.3
    for name in ("config.yaml", "estimate.json", "metrics.jsonl", "events.jsonl", "ledger.jsonl",
                 "final/adapter_model.safetensors", "final/adapter_config.json", "final/trainer_state.json",
                 "final/optimizer.safetensors", "final/rng.safetensors"):
        assert (out / name).is_file(), name
    row = read_jsonl(out / "metrics.jsonl")[0]
    for key in ("step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "micro_batch_size",
                "grad_accum", "mem_allocated", "mem_reserved", "mem_peak_allocated", "mem_peak_reserved",
                "mem_fragmentation", "host_rss", "time"):
        assert key in row, key
    assert "peak_bytes" in json.loads((out / "estimate.json").read_text())
    kinds = [e["kind"] for e in read_jsonl(out / "events.jsonl")]
    assert [k for k in kinds if k != "data"][0] == "first_step_memory" and "checkpoint" in kinds and "data" in kinds
    # 12 steps x 4 samples over 24 samples: two epochs, every sample exactly twice
    ids = ledger_ids(out)
    assert sorted(ids) == sorted(list(range(24)) * 2)


def test_adapter_loads_with_peft(model_dir, data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, train={"max_steps": 2}), quiet=True)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(base, out / "final")
    sd = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert sd and all(v.abs().sum() > 0 for v in sd.values())  # trained B is no longer zero


def _grads_of_first_step(model_dir, data, out, mbs, accum):
    """The LoRA gradients just before the first optimizer step, split as mbs x accum."""
    cfg = make_cfg(model_dir, data, out, train={"micro_batch_size": mbs, "grad_accum": accum, "max_steps": 1},
                   data={"group_by_length": False})  # the order then does not depend on the micro-batch size
    grads = []

    def capture(phase, info):
        if phase == "optimizer":
            grads.append([p.grad.detach().clone() for p in run.ctx.params])

    run = setup(cfg, fault=capture, quiet=True)
    from qlorafit.runtime.train import loop
    loop(run)
    return grads[0], out / "final"


def test_accumulation_split_does_not_change_the_update(model_dir, data, tmp_path):
    g1, a1 = _grads_of_first_step(model_dir, data, tmp_path / "a", 8, 1)
    g8, a8 = _grads_of_first_step(model_dir, data, tmp_path / "b", 1, 8)
    g2, a2 = _grads_of_first_step(model_dir, data, tmp_path / "c", 2, 4)
    for x, y, z in zip(g1, g8, g2):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(x, z, atol=1e-6, rtol=1e-4)
    assert_adapters_close(a1, a8)
    assert read_jsonl(tmp_path / "a" / "ledger.jsonl") [0]["sample_ids"] == \
        read_jsonl(tmp_path / "b" / "ledger.jsonl")[0]["sample_ids"]


def test_nan_steps_are_skipped_without_touching_weights_then_stop(model_dir, data, tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg(model_dir, data, out, train={"max_steps": 6, "max_bad_steps": 2})
    seen = []

    def poison(phase, info):
        if phase == "backward" and info["step"] >= 2:
            if info["micro_index"] == 0:
                seen.append([p.detach().clone() for p in run.ctx.params])
            run.ctx.params[0].grad.fill_(float("nan"))

    run = setup(cfg, fault=poison, quiet=True)
    from qlorafit.runtime.train import loop
    with pytest.raises(UserError, match="train.lr.*max_grad_norm"):
        loop(run)
    for before, p in zip(seen[0], run.ctx.params):  # steps 2 and 3 skipped: weights as after step 1
        assert torch.equal(before, p.detach())
    assert all(p.grad is None for p in run.ctx.params)
    assert run.pos.updates == 1 and run.pos.step == 3
    nan = [e for e in read_jsonl(out / "events.jsonl") if e["kind"] == "nan_loss"]
    assert [e["step"] for e in nan] == [2, 3]
    assert [r["applied"] for r in read_jsonl(out / "ledger.jsonl")] == [True, False, False]


# --- bad input: a clear message naming the file/line/field, and no output that looks complete ------------------

def test_missing_dataset_file(model_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="nope.jsonl"):
        train(make_cfg(model_dir, tmp_path / "nope.jsonl", out), quiet=True)
    assert not (out / "config.yaml").exists()


def test_malformed_jsonl_line(model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "broken\n')
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"bad.jsonl.*line 2"):
        train(make_cfg(model_dir, bad, out), quiet=True)
    assert not (out / "config.yaml").exists()


def test_wrong_model_path(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="model.name_or_path.*no-such-model"):
        train(make_cfg(tmp_path / "no-such-model", data, out), quiet=True)
    assert not out.exists()


def test_output_dir_holding_a_different_run(model_dir, data, tmp_path):
    out = tmp_path / "run"
    train(make_cfg(model_dir, data, out, train={"max_steps": 1}), quiet=True)
    other = make_cfg(model_dir, data, out, train={"max_steps": 1, "lr": 5e-3})
    with pytest.raises(UserError, match=r"different run.*train.lr.*--resume.*--overwrite"):
        train(other, quiet=True)
    before = adapter(out / "final")
    s = train(other, overwrite=True, quiet=True)  # --overwrite replaces it
    assert s["steps"] == 1 and len(read_jsonl(out / "ledger.jsonl")) == 1
    assert not all(torch.equal(before[k], v) for k, v in adapter(out / "final").items())


def test_cli_train_print_config_and_errors(capsys, tmp_path):
    from qlorafit.cli import main

    assert main(["train", "--print-config", "--set", "train.lr=1e-3"]) == 0
    assert "lr: 0.001" in capsys.readouterr().out
    assert main(["train", "--set", "train.lrr=1"]) == 2
    assert "did you mean 'train.lr'" in capsys.readouterr().err
    assert main(["train", "--set", f"data.path={tmp_path / 'missing.jsonl'}", "--output-dir",
                 str(tmp_path / "r"), "--set", "model.name_or_path=" + str(tmp_path)]) == 2


def test_packing_trains_every_sample_once(model_dir, data, tmp_path):
    out = tmp_path / "run"
    s = train(make_cfg(model_dir, data, out, data={"packing": True, "max_seq_length": 48},
                       train={"micro_batch_size": 2, "grad_accum": 1, "max_steps": 0, "epochs": 1.0}), quiet=True)
    assert s["steps"] >= 2
    assert sorted(ledger_ids(out)) == list(range(24))


def test_plan_auto_with_a_budget_keeps_the_effective_batch(model_dir, data, tmp_path):
    from qlorafit.core import config as C

    out = tmp_path / "run"
    cfg = make_cfg(model_dir, data, out, train={"micro_batch_size": 2, "grad_accum": 4, "max_steps": 1})
    s = train(cfg, plan=True, budget_bytes=8 * 1024**3, quiet=True)
    assert s["steps"] == 1
    planned = C.load(str(out / "config.yaml"))
    assert planned.train.micro_batch_size * planned.train.grad_accum == 8
    assert len(read_jsonl(out / "ledger.jsonl")[0]["sample_ids"]) == 8


def test_lm_head_in_host_ram_trains_the_same(model_dir, data, tmp_path):
    """model.offload_lm_head: the streamed loss gives the losses, eval losses and adapter of the chunked loss."""
    runs = {}
    for on in (False, True):
        out = tmp_path / f"head-{on}"
        train(make_cfg(model_dir, data, out, model={"offload_lm_head": on}, data={"eval_split": 0.25},
                       train={"max_steps": 4, "eval_every": 2}), quiet=True)
        runs[on] = ([r["loss"] for r in read_jsonl(out / "metrics.jsonl")],
                    [e["loss"] for e in read_jsonl(out / "events.jsonl") if e["kind"] == "eval"], out / "final")
    (loss_a, eval_a, final_a), (loss_b, eval_b, final_b) = runs[False], runs[True]
    assert len(loss_a) == 4 and len(eval_a) == 2 and loss_a[-1] < loss_a[0]  # it trains, and evaluates
    assert loss_b == pytest.approx(loss_a, rel=1e-4) and eval_b == pytest.approx(eval_a, rel=1e-4)
    assert_adapters_close(final_a, final_b, atol=1e-4, rtol=1e-3)
    saved = C.load(str(tmp_path / "head-True" / "config.yaml"))
    assert saved.model.offload_lm_head is True


def test_schedules_warm_up_then_decay():
    from qlorafit.core.config import TrainConfig
    from qlorafit.runtime.optim import lr_at

    for name in ("constant", "linear", "cosine"):
        t = TrainConfig(lr=1.0, warmup_steps=4, schedule=name)
        lrs = [lr_at(u, 20, t) for u in range(20)]
        assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
        assert lrs[4] == 1.0
        if name == "constant":
            assert set(lrs[4:]) == {1.0}
        else:
            assert all(x >= y for x, y in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.1


def test_leak_watch_warns_once_on_steady_growth():
    from qlorafit.runtime.monitor import LEAK_MIN_BYTES, LEAK_STEPS, LeakWatch

    w = LeakWatch()
    flat = [w.observe((4, 512), 10**9) for _ in range(10)]
    assert not any(flat)
    grow = [w.observe((4, 512), 10**9 + i * LEAK_MIN_BYTES) for i in range(LEAK_STEPS + 1)]
    assert grow[-1] and grow[-1]["grew_bytes"] == LEAK_STEPS * LEAK_MIN_BYTES
    assert w.observe((4, 512), 2 * 10**9) is None  # once
    w2 = LeakWatch()  # a new shape resets the series: activations of longer batches are not a leak
    assert not any(w2.observe((4, 100 * i), 10**9 + i * LEAK_MIN_BYTES) for i in range(10))


def test_tensorboard_without_the_package_is_a_clear_error(model_dir, data, tmp_path):
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    with pytest.raises(UserError, match="train.tensorboard.*pip install"):
        train(make_cfg(model_dir, data, tmp_path / "run", train={"tensorboard": True}), quiet=True)


def test_compile_layers_wraps_every_decoder_layer(tmp_path):
    """train.compile: every decoder layer gets a compiled call (nothing compiles until a forward: CPU-safe here);
    on CPU load_model leaves the model eager."""
    from qlorafit.runtime.model import compile_layers, load_model
    model_dir = tiny_model_dir(tmp_path / "models")
    cfg = make_cfg(model_dir, tmp_path / "none.jsonl", tmp_path / "run", train={"compile": True})
    loaded = load_model(cfg, str(model_dir), torch.device("cpu"))
    layers = loaded.model.get_base_model().model.layers
    assert all(getattr(layer, "_compiled_call_impl", None) is None for layer in layers)  # CPU: ignored
    assert compile_layers(loaded.model) == len(layers) > 0
    assert all(layer._compiled_call_impl is not None for layer in layers)


def test_plan_auto_resume_keeps_every_planned_field(tmp_path):
    """A resumed `--plan auto` run keeps the plan it started with, the MLP tiling and compile included."""
    from qlorafit.runtime.train import plan_auto
    saved = C.from_dict({"train": {"micro_batch_size": 2, "grad_accum": 8, "mlp_tile_tokens": 8192, "compile": True},
                         "model": {"offload_lm_head": True}}, "saved")
    (tmp_path / "config.yaml").write_text(C.to_yaml(saved))
    cfg = plan_auto(C.from_dict({"train": {"micro_batch_size": 16, "grad_accum": 1}}, "new"), "unused", None, None,
                    tmp_path, resume=True)
    t = cfg.train
    assert (t.micro_batch_size, t.grad_accum, t.mlp_tile_tokens, t.compile, cfg.model.offload_lm_head) == \
        (2, 8, 8192, True, True)


@pytest.mark.parametrize("ckpt", ["on", "offload"])
def test_compiled_layers_share_their_graphs_skip_the_frozen_projection_in_recompute_and_match_eager(tmp_path, ckpt):
    """compile_layers under plain and offloaded checkpointing: Dynamo captures every layer in the same graphs, shared
    by all layers (the layer up to the MLP's frozen output projection, and the residual after it; the one break is
    that projection, run eagerly), and the loss and LoRA gradients equal eager's. The recompute in backward stops
    before the frozen down_proj: it runs once per micro-batch, as in eager, not twice (a compiled layer recomputed
    whole ran it again: +5 % of a 16K step). Offloaded checkpointing's saved_tensors_hooks would break the graph if
    compiled with the layer (then every layer ran eager): the checkpoint must stay outside the compiled call, and
    still offload. aot_eager: Dynamo and AOTAutograd as on the GPU, no C++ toolchain needed."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from qlorafit.runtime.loss import forward_loss
    from qlorafit.runtime.model import compile_layers, load_model
    from qlorafit.runtime.offload import active_handle

    model_dir = tiny_model_dir(tmp_path / "models")
    cfg = make_cfg(model_dir, tmp_path / "none.jsonl", tmp_path / "run",
                   lora={"dropout": 0.0}, train={"grad_checkpointing": ckpt})
    model = load_model(cfg, str(model_dir), torch.device("cpu")).model
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "labels": ids}

    def step():
        model.zero_grad(set_to_none=True)
        s, n = forward_loss(model, batch, "chunked")
        (s / n).backward()
        return (s / n).item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}

    layers = model.get_base_model().model.layers

    def down_proj_matmuls():  # bitsandbytes' 4-bit matmuls on the MLP's intermediate width, in one step
        from torch.profiler import profile
        with profile(record_shapes=True) as prof:
            out = step()
        n = sum(1 for e in prof.events() if e.name == "bitsandbytes::gemm_4bit"
                and e.input_shapes[0][-1] == model.config.intermediate_size)
        return out, n

    (eager_loss, eager_grads), eager_down = down_proj_matmuls()
    assert eager_down == len(layers)  # eager: the recompute stops before the frozen down_proj
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        from torch._dynamo.backends.registry import lookup_backend
        return lookup_backend("aot_eager")(gm, example_inputs)

    torch._dynamo.reset()
    counters.clear()
    assert compile_layers(model, backend=counting) == len(layers)
    step()  # compiles
    (loss, grads), compiled_down = down_proj_matmuls()
    assert compiled_down == len(layers)  # compiled: still once per layer, not recomputed
    breaks = dict(counters["graph_break"])
    # one set of graphs for every layer: the attention part, the MLP up to the break, the residual after it (a
    # recompile per layer would multiply them); the only break is the eager projection
    assert len(graphs) <= 3 and breaks and all("torch.compiler.disable" in b for b in breaks), (len(graphs), breaks)
    assert loss == pytest.approx(eager_loss, rel=1e-6)
    for k in eager_grads:
        torch.testing.assert_close(grads[k], eager_grads[k], rtol=1e-5, atol=1e-6)
    if ckpt == "offload":
        assert active_handle(model).peak_host_bytes > 0  # the compiled layers' inputs still went to host RAM
    torch._dynamo.reset()


def test_default_fast_path_trains_like_plain_eager(tmp_path):
    """The defaults (layers compiled, embedding looked up in host RAM) compute the same step as the plain eager model
    with the embedding on the device: same loss, same LoRA gradients, same weights after two optimizer steps with
    gradient accumulation. CPU: compile_layers with aot_eager (Dynamo + AOTAutograd as on the GPU), since load_model
    compiles only where Triton runs."""
    import torch._dynamo

    from qlorafit.runtime.loss import forward_loss
    from qlorafit.runtime.model import compile_layers, compile_supported, load_model
    from qlorafit.runtime.offload import in_host_ram

    defaults = C.Config()
    assert defaults.train.compile and defaults.model.offload_embedding  # the defaults this test is about
    assert not compile_supported(torch.device("cpu"))
    model_dir = tiny_model_dir(tmp_path / "models")
    fast_cfg = make_cfg(model_dir, tmp_path / "none.jsonl", tmp_path / "a", train={"grad_checkpointing": "on"},
                        model={"offload_embedding": defaults.model.offload_embedding})
    fast_cfg.train.compile = defaults.train.compile
    plain_cfg = make_cfg(model_dir, tmp_path / "none.jsonl", tmp_path / "b", train={"grad_checkpointing": "on",
                         "compile": False}, model={"offload_embedding": False})
    runs = []
    for cfg in (plain_cfg, fast_cfg):
        torch.manual_seed(0)  # the same LoRA init in both
        model = load_model(cfg, str(model_dir), torch.device("cpu")).model
        model.train()
        torch._dynamo.reset()
        if cfg.train.compile:
            assert compile_layers(model, backend="aot_eager") > 0
        assert in_host_ram(model.get_input_embeddings()) == cfg.model.offload_embedding
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-2)
        g = torch.Generator().manual_seed(1)
        losses, grads = [], []
        for _ in range(2):  # two optimizer steps of two micro-batches each
            for _ in range(2):
                ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=g)
                s, n = forward_loss(model, {"input_ids": ids, "labels": ids}, "chunked")
                (s / n).backward()
                losses.append((s / n).item())
            grads.append([p.grad.clone() for p in params])
            opt.step()
            opt.zero_grad(set_to_none=True)
        runs.append((losses, grads, [p.detach().clone() for p in params]))
    torch._dynamo.reset()
    (l0, g0, w0), (l1, g1, w1) = runs
    assert l1 == pytest.approx(l0, rel=1e-5)
    for a, b in zip(sum(g0, []), sum(g1, [])):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    for a, b in zip(w0, w1):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
