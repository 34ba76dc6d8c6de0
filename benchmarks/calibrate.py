"""Measure the real peak GPU memory of QLoRA training steps, to calibrate and check qlorafit's estimator.

Runs on the GPU machine (through the device tool). For each (model, stack) group a fresh process loads the model in
4 bit from a random-weight checkpoint at real shape, then runs each configuration of the group: LoRA attached,
3 optimizer steps on full-length random sequences, and records

    peak = torch.cuda.max_memory_reserved() + memory the process holds outside PyTorch (context, cuBLAS, paged)

which is what the estimator predicts. Between configurations the LoRA is removed, the optimizer dropped and the
cache emptied, so each configuration starts from the loaded base as a fresh run would.

usage (on the GPU machine):
    python benchmarks/calibrate.py --groups llama-3.1-8b:hf,llama-3.1-8b:qlorafit --out $OUT/calib.jsonl
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


def row_setup(r: dict):
    """The estimator's Setup of one measured row (tests/fixtures/calibration.json, the rows this script writes)."""
    from qlorafit.core.estimate import Setup

    return Setup(batch_size=r["batch"], seq_len=r["seq"], lora_r=r["rank"], lora_targets=tuple(r["targets"].split(",")),
                 grad_checkpointing=r["checkpointing"], optimizer=r["optimizer"], lora_dropout=r["dropout"],
                 loss_impl=r["loss"], stack=r["stack"], offload_embedding=r["offload_embedding"],
                 expandable_segments="expandable_segments:True" in r["alloc_conf"],
                 mlp_tile_tokens=r.get("mlp_tile_tokens", 0), compile=r.get("compile", False),
                 cuda_graphs=r.get("cuda_graphs", "off"))  # rows before train.compile and
    # train.cuda_graphs existed ran eagerly: Setup's defaults would give them the compiled or graphed speed terms


# Each configuration: (batch, seq, rank, targets, checkpointing, optimizer, dropout, loss[, offload_embedding,
# mlp_tile_tokens, offload_lm_head])
QKVO = "q_proj,k_proj,v_proj,o_proj"
ALL = "all-linear"
GROUPS = {
    "llama-3.1-8b:qlorafit": [
        (1, 256, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (2, 512, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (1, 2048, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (1, 8192, 16, QKVO, "on", "adamw", 0.05, "chunked"),
        (1, 16384, 32, ALL, "on", "adamw", 0.0, "chunked"),
        (4, 1024, 64, ALL, "on", "paged_adamw_8bit", 0.05, "chunked"),
        (1, 1024, 8, QKVO, "off", "adamw_8bit", 0.05, "chunked"),
        (8, 512, 32, ALL, "on", "adamw", 0.05, "standard"),
        (2, 2048, 16, ALL, "off", "paged_adamw_32bit", 0.0, "standard"),
        (1, 4096, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "standard"),
        (2, 512, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "fused", True),
        (1, 2048, 16, QKVO, "on", "adamw", 0.05, "fused", True),
        (1, 16384, 32, ALL, "offload", "adamw", 0.0, "fused", True),
        (1, 32768, 32, ALL, "offload", "adamw", 0.0, "chunked", True),
        (2, 4096, 16, QKVO, "offload", "paged_adamw_8bit", 0.05, "chunked"),
    ],
    "llama-3.1-8b:tiled": [  # qlorafit stack with the MLP tiled over the sequence (qlorafit.runtime.tiling)
        (1, 32768, 32, ALL, "offload", "adamw", 0.0, "chunked", True, 4096),
        (1, 16384, 16, QKVO, "on", "adamw", 0.05, "chunked", False, 2048),
    ],
    "llama-3.1-8b:hf": [
        (2, 512, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "standard"),
        (1, 2048, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "standard"),
        (1, 8192, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "standard"),
        (4, 512, 32, ALL, "on", "adamw", 0.05, "standard"),
        (1, 1024, 16, QKVO, "off", "paged_adamw_32bit", 0.05, "standard"),
    ],
    "mistral-7b:qlorafit": [
        (1, 512, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (4, 2048, 16, ALL, "on", "adamw", 0.05, "chunked"),
        (1, 4096, 64, QKVO, "off", "adamw", 0.05, "chunked"),
        (8, 256, 8, QKVO, "off", "paged_adamw_8bit", 0.0, "standard"),
        (1, 16384, 16, ALL, "on", "paged_adamw_32bit", 0.05, "chunked"),
    ],
    "mistral-7b:hf": [
        (2, 512, 16, QKVO, "on", "paged_adamw_32bit", 0.05, "standard"),
        (1, 4096, 16, ALL, "on", "paged_adamw_32bit", 0.05, "standard"),
    ],
    "llama-3.2-1b:qlorafit": [
        (1, 256, 16, QKVO, "on", "adamw", 0.05, "chunked"),
        (8, 1024, 16, QKVO, "off", "adamw", 0.05, "chunked"),
        (4, 4096, 64, ALL, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (2, 16384, 16, QKVO, "on", "adamw_8bit", 0.05, "chunked"),
        (1, 2048, 32, ALL, "off", "adamw", 0.0, "standard"),
    ],
    "qwen2.5-1.5b:qlorafit": [
        (1, 512, 16, QKVO, "on", "adamw", 0.05, "chunked"),
        (4, 2048, 32, ALL, "on", "paged_adamw_32bit", 0.05, "chunked"),
        (2, 1024, 16, QKVO, "off", "adamw", 0.05, "chunked"),
        (1, 8192, 64, ALL, "on", "adamw", 0.05, "chunked"),
        (8, 512, 8, QKVO, "off", "adamw_8bit", 0.05, "standard"),
    ],
    "gemma-2-2b:qlorafit": [
        (1, 1024, 16, QKVO, "on", "adamw", 0.05, "chunked"),
        (2, 2048, 16, ALL, "off", "adamw", 0.05, "chunked"),
        (4, 512, 32, ALL, "on", "paged_adamw_32bit", 0.05, "standard"),
    ],
}


def make_optimizer(name, params):
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4, fused=True)
    import bitsandbytes as bnb

    return {"paged_adamw_32bit": bnb.optim.PagedAdamW32bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
            "adamw_8bit": bnb.optim.AdamW8bit}[name](params, lr=1e-4)


def loss_fn(model, ids, loss_impl):
    """The loss the stack uses. qlorafit's chunked/fused go through qlorafit.runtime.loss when it exists."""
    if loss_impl != "standard":
        from qlorafit.runtime.loss import forward_loss
        s, n = forward_loss(model, {"input_ids": ids, "labels": ids}, loss_impl)
        return s / n
    return model(input_ids=ids, labels=ids).loss


def loss_available(loss_impl: str) -> str:
    """The loss this run can use: chunked/fused need qlorafit.runtime.loss; without it, fall back and say so."""
    if loss_impl == "standard":
        return loss_impl
    try:
        import qlorafit.runtime.loss  # noqa: F401
        return loss_impl
    except Exception:  # noqa: BLE001 - not there yet, or half-written: measure the standard loss instead
        return "standard"


def _load_hf(path):
    """The usual recipe's model: from_pretrained in 4 bit, then prepare_model_for_kbit_training (fp32 upcasts)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=torch.bfloat16,
                                                 device_map={"": 0}, attn_implementation="sdpa")
    model.config.use_cache = False
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)


def run_one(group: str, index: int, out_path: str, steps: int) -> None:
    """One configuration in this (fresh) process: load, LoRA, `steps` optimizer steps, one JSON line."""
    import torch
    from gpu_common import GIB, build_model, non_torch_bytes, provenance

    model_name, stack = group.split(":")
    stack = "qlorafit" if stack == "tiled" else stack
    b, t, r, targets, ckpt, optim, dropout, loss_impl, *extra = GROUPS[group][index]
    emb_offload = bool(extra and extra[0])
    tile = extra[1] if len(extra) > 1 else 0
    head_offload = bool(len(extra) > 2 and extra[2])
    loss_impl = loss_available(loss_impl)
    path = build_model(model_name)
    rec = {"kind": "step", "group": group, "model": model_name, "stack": stack, "batch": b, "seq": t, "rank": r,
           "targets": targets, "checkpointing": ckpt, "optimizer": optim, "dropout": dropout, "loss": loss_impl,
           "offload_embedding": emb_offload, "mlp_tile_tokens": tile,
           "offload_lm_head": head_offload, "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")}
    tg = ["all-linear"] if targets == ALL else targets.split(",")
    torch.cuda.init()
    if stack == "hf":
        from peft import LoraConfig, get_peft_model
        model = _load_hf(path)
        if ckpt == "off":
            model.gradient_checkpointing_disable()
        pm = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=dropout, target_modules=tg[0]
                                              if tg == ["all-linear"] else tg, task_type="CAUSAL_LM"))
    else:
        from qlorafit.core import config as C
        from qlorafit.runtime.model import load_model
        cfg = C.from_dict({"model": {"name_or_path": path, "compute_dtype": "bf16", "offload_embedding": emb_offload,
                                     "offload_lm_head": head_offload},
                           "lora": {"r": r, "alpha": 2 * r, "dropout": dropout, "targets": tg},
                           "train": {"grad_checkpointing": ckpt, "optimizer": optim, "loss_impl": loss_impl,
                                     "mlp_tile_tokens": tile}},
                          f"{group}[{index}]")
        pm = load_model(cfg, path, torch.device("cuda", 0)).model
    pm.train()
    rec["load_peak_reserved"] = torch.cuda.max_memory_reserved()
    # what the loading path made of MoE experts (transformers 5 keeps them as fused 3-D parameters): type and dtype
    experts = {f"{type(p).__name__}:{p.dtype}" for n, p in pm.named_parameters() if ".experts." in n}
    if experts:
        rec["expert_params"] = sorted(experts)
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = make_optimizer(optim, params)
    torch.cuda.reset_peak_memory_stats()
    g = torch.Generator(device="cuda").manual_seed(0)
    times = []
    try:
        for _ in range(steps):
            ids = torch.randint(0, pm.config.vocab_size, (b, t), device="cuda", generator=g)
            torch.cuda.synchronize()
            ts = time.time()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = loss_fn(pm, ids, loss_impl)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.time() - ts)
            del loss, ids
        rec.update(peak_reserved=torch.cuda.max_memory_reserved(), peak_allocated=torch.cuda.max_memory_allocated(),
                   non_torch=non_torch_bytes(), tokens_per_s=round(b * t / min(times[1:] or times), 1), ok=True)
    except torch.OutOfMemoryError as e:
        rec.update(ok=False, error=str(e).splitlines()[0][:200])
    rec["measured"] = rec.get("peak_reserved", 0) + rec.get("non_torch", 0)
    rec["provenance"] = provenance(" ".join(sys.argv))
    with open(out_path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"[{group}] b{b} s{t} r{r} {targets[:10]} ckpt={ckpt} {optim} {loss_impl} emb_off={emb_offload}: "
          f"{rec['measured'] / GIB:.2f} GiB, {rec.get('tokens_per_s')} tok/s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", required=True, help="comma list of model:stack groups (see GROUPS)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        group, index = a.one.rsplit("#", 1)
        run_one(group, int(index), a.out, a.steps)
        return
    for group in a.groups.split(","):
        for index in range(len(GROUPS[group])):
            # a fresh process per configuration: the allocator, the CUDA context and bitsandbytes' paged buffers
            # start clean, as in a real run
            rc = subprocess.run([sys.executable, __file__, "--groups", group, "--one", f"{group}#{index}",
                                 "--out", a.out, "--steps", str(a.steps)]).returncode
            if rc:
                print(f"[{group}#{index}] exit {rc}", flush=True)


if __name__ == "__main__":
    main()
