"""train.cuda_graphs on a real GPU (GPU only: run through the device tool with `pytest -m gpu tests/test_graphs_gpu.py`).

The CPU tests replay a stand-in; here the micro-batches are really captured (torch.cuda.graph), with the graphed
pass's causal attention and, where liger-kernel is installed, its fused layers: the run through train.loop captures
its shapes, keeps them (no disagreement with the eager pass), and trains like the same run with graphs off, to bf16
rounding.
"""

import gc

import pytest
import torch

from qlorafit.runtime import graphs as GR
from qlorafit.runtime.train import loop, setup
from test_train_helpers import adapter, make_cfg, read_jsonl, tiny_model_dir, write_jsonl

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_captured_micro_batches_train_like_the_eager_step_on_a_gpu(tmp_path):
    model_dir = tiny_model_dir(tmp_path / "models", hidden=256, layers=4)
    data = write_jsonl(tmp_path / "train.jsonl")
    runs = {}
    for graphs in ("off", "on"):
        out = tmp_path / graphs
        cfg = make_cfg(model_dir, data, out, model={"compute_dtype": "bf16"},
                       train={"max_steps": 6, "micro_batch_size": 2, "grad_accum": 2, "grad_checkpointing": "on",
                              "cuda_graphs": graphs}, data={"group_by_length": False})
        run = setup(cfg, quiet=True)
        g = run.ctx.graphs
        assert (g is not None) == (graphs == "on")
        loop(run)
        if g is not None:
            assert g.captures >= 1 and not g.disabled, g.checks
            assert all(c["grads_rel"] <= GR.AGREE_GRADS and c["loss_rel"] <= GR.AGREE_LOSS for c in g.checks)
        runs[graphs] = ([r["loss"] for r in read_jsonl(out / "metrics.jsonl")], adapter(out / "final"))
        del run, g  # the graphs hold their pool: free it for the next run and for the GPU tests after this one
        gc.collect()
        torch.cuda.empty_cache()
    (eager_losses, eager_ad), (graph_losses, graph_ad) = runs["off"], runs["on"]
    assert graph_losses == pytest.approx(eager_losses, rel=2e-2)
    num = sum(float((graph_ad[k].float() - eager_ad[k].float()).norm()) ** 2 for k in eager_ad) ** 0.5
    den = sum(float(eager_ad[k].float().norm()) ** 2 for k in eager_ad) ** 0.5
    assert num / den < 0.25, num / den  # bf16 rounding through Adam; a wrong graph (stale inputs, lost
    # accumulation) trains another adapter, off by order 1
