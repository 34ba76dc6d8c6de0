"""GPU check of the memory levers the CPU tests cannot see: the loss's peak and speed, the offload copies, the
embedding and lm_head in host RAM. Prints one JSON object and writes it to --out.

  loss      Llama-3-8B head (h 4096, vocab 128,256), bf16, N target tokens: standard vs chunked vs fused (liger)
            vs streamed (the head in pinned host RAM, offload_lm_head's loss).
            Loss and grad_hidden against standard; peak allocated above the inputs; time of forward+backward.
  offload   A random-weight catalogue model in nf4 + LoRA, batch 1 x seq: checkpointing on vs offload vs off (if it
            fits). Peak allocated, step time, host bytes, and the LoRA gradients against "on" (same seed: the
            offload only moves the layer inputs, so they must agree to rounding).
  embedding The same model with model.offload_embedding: peak allocated and the logits against the plain model.
  lm_head   The same model with model.offload_lm_head (and the embedding): peak allocated, gradients against "on".

usage (on the GPU machine, through the device tool):
    . benchmarks/gpu_setup.sh && python benchmarks/levers_check.py --model llama-3.2-1b --seq 8192 --out $OUT/levers.json
"""

import argparse
import gc
import json
import sys
import time

import torch
import torch.nn.functional as F

from gpu_common import GIB, build_model, provenance, write_json


def timed(fn, reps: int = 3):
    """(result of the last run, median seconds, peak allocated bytes above what was allocated before)."""
    times, peak, out = [], 0, None
    for _ in range(reps):
        out = None
        gc.collect()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        peak = max(peak, torch.cuda.max_memory_allocated() - base)
    return out, sorted(times)[len(times) // 2], peak


def check_loss(tokens: int) -> dict:
    from qlorafit.core.estimate import lm_head_slice_rows, loss_chunk_tokens
    from qlorafit.runtime.loss import LinearCrossEntropy, StreamedLinearCrossEntropy

    h_dim, vocab = 4096, 128256
    torch.manual_seed(0)
    w = (torch.randn(vocab, h_dim, device="cuda") * 0.02).to(torch.bfloat16)  # frozen lm_head
    h0 = torch.randn(tokens, h_dim, device="cuda", dtype=torch.bfloat16)
    y = torch.randint(0, vocab, (tokens,), device="cuda")
    chunk = loss_chunk_tokens(vocab, tokens)

    def standard():
        return F.cross_entropy(F.linear(h, w).float(), y, reduction="sum")

    def chunked():
        return LinearCrossEntropy.apply(h, w, None, y, chunk, None)

    w_host = w.cpu().pin_memory()  # offload_lm_head's head: pinned host RAM, streamed in slices
    rows = lm_head_slice_rows(vocab, h_dim)
    stream_chunk = loss_chunk_tokens(rows, tokens)

    def streamed():
        return StreamedLinearCrossEntropy.apply(h, w_host, None, y, rows, stream_chunk, None)

    impls = {"standard": standard, "chunked": chunked, "streamed": streamed}
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        liger = LigerFusedLinearCrossEntropyLoss(reduction="sum")
        impls["fused"] = lambda: liger(w, h, y).float()
    except ImportError as e:
        print(f"liger-kernel not importable: {e}", file=sys.stderr)

    out, ref = {"tokens": tokens, "chunk_tokens": chunk}, None
    for name, fn in impls.items():
        h = h0.clone().requires_grad_(True)

        def step():
            h.grad = None
            loss = fn()
            loss.backward()
            return loss.detach(), h.grad

        (loss, grad), secs, peak = timed(step)
        row = {"loss": loss.item(), "seconds": round(secs, 4), "peak_gib": round(peak / GIB, 3)}
        if ref is None:
            ref = (loss, grad.float())
        else:
            row["loss_rel_err"] = abs(loss.item() - ref[0].item()) / abs(ref[0].item())
            row["grad_rel_err"] = ((grad.float() - ref[1]).norm() / ref[1].norm()).item()
        out[name] = row
        del h, grad
    return out


def load(model_dir: str, checkpointing: str, offload_emb: bool = False, offload_head: bool = False):
    from qlorafit.core.config import Config
    from qlorafit.runtime.model import load_model

    cfg = Config()
    cfg.model.compute_dtype, cfg.model.offload_embedding = "bf16", offload_emb
    cfg.model.offload_lm_head = offload_head
    cfg.lora.dropout, cfg.lora.targets = 0.0, ["q_proj", "k_proj", "v_proj", "o_proj"]
    cfg.train.grad_checkpointing = checkpointing
    torch.manual_seed(0)
    loaded = load_model(cfg, model_dir, torch.device("cuda:0"))
    gen = torch.Generator("cuda").manual_seed(1)
    for name, p in loaded.model.named_parameters():
        if "lora_B" in name:  # nonzero B so every LoRA weight gets a gradient, the same in every load
            p.data.normal_(0, 0.01, generator=gen)
    loaded.model.train()
    return loaded


def check_model(model_dir: str, seq: int) -> dict:
    from qlorafit.runtime.loss import forward_loss

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 1000, (1, seq), generator=g).cuda()
    batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    out, ref_grads = {}, None
    for mode, emb, head in (("on", False, False), ("offload", False, False), ("on", True, False),
                            ("on", True, True), ("off", False, False)):
        key = mode + ("+embedding" if emb else "") + ("+lm_head" if head else "")
        loaded = load(model_dir, mode, emb, head)
        model = loaded.model

        def step():
            model.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss, _ = forward_loss(model, batch, "chunked")
            loss.backward()
            return loss.detach()

        try:
            loss, secs, peak = timed(step)
        except torch.OutOfMemoryError:
            out[key] = {"oom": True}
            continue
        grads = {k: p.grad.float() for k, p in model.named_parameters() if p.requires_grad}
        row = {"loss": loss.item(), "seconds": round(secs, 3), "tokens_per_s": round(seq / secs),
               "peak_gib": round(peak / GIB, 3), "allocated_gib": round(torch.cuda.memory_allocated() / GIB, 3)}
        if loaded.offload is not None:
            row["peak_host_gib"] = round(loaded.offload.peak_host_bytes / GIB, 3)
            row["kept_gib"] = round(loaded.offload.kept_bytes / GIB, 3)
        if ref_grads is None:
            ref_grads = grads
        else:
            row["grad_rel_err_vs_on"] = max(((grads[k] - ref_grads[k]).norm() / ref_grads[k].norm()).item()
                                            for k in ref_grads)
        out[key] = row
        del loaded, model, grads
        gc.collect()
        torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.2-1b")
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--loss-tokens", type=int, default=8192)
    ap.add_argument("--out", default="levers.json")
    a = ap.parse_args()
    result = {"provenance": provenance(" ".join(sys.argv)), "loss": check_loss(a.loss_tokens)}
    result["model"] = {"name": a.model, "seq": a.seq, **check_model(build_model(a.model), a.seq)}
    print(json.dumps(result, indent=1))
    write_json(a.out, result)


if __name__ == "__main__":
    main()
