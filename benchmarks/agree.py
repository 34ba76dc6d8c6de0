"""Do qlorafit and the recipe compute the same training? (issue 6: speed must not come from computing something else)

One process, one random-weight model loaded twice in NF4: once the recipe's way (prepare_model_for_kbit_training +
get_peft_model, HF's own loss on full fp32 logits) and once qlorafit's (`qlorafit.runtime.model.load_model` with the levers
of the benchmark's variants: chunked or streamed loss, no upcasts, optionally the embedding and lm_head in host RAM).
qlorafit's LoRA weights are then overwritten with the recipe's, so both start identical, and both train on the same
batches (random token ids, fixed seed) with the same optimizer (AdamW, lr 2e-4, clip 0.3), bf16 autocast. Reports the
per-step losses of both and the largest relative difference.

usage (GPU machine): python benchmarks/agree.py --steps 12 --out $OUT/agree.jsonl
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def main():
    import torch
    from gpu_common import build_model, provenance
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from qlorafit.core import config as C
    from qlorafit.runtime.loss import forward_loss
    from qlorafit.runtime.model import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--levers", default="offload_embedding,offload_lm_head", help="comma list of model.* switches")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    path = build_model(a.model)
    dev = torch.device("cuda", 0)
    qkvo = ["q_proj", "k_proj", "v_proj", "o_proj"]

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=torch.bfloat16)
    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, device_map={"": 0}, use_cache=False)
    ref = prepare_model_for_kbit_training(ref)  # gradient checkpointing (reentrant) and the fp32 upcasts
    ref = get_peft_model(ref, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                         target_modules=qkvo))

    levers = {k: True for k in a.levers.split(",") if k}
    cfg = C.from_dict({"model": {"name_or_path": path, "compute_dtype": "bf16", **levers},
                       "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targets": qkvo},
                       "train": {"grad_checkpointing": "on", "loss_impl": "chunked"}}, "agree")
    ours = load_model(cfg, path, dev).model
    ref_lora = {n.split("base_model.model.", 1)[1]: p for n, p in ref.named_parameters() if "lora_" in n}
    copied = 0
    with torch.no_grad():  # the same starting adapter (dropout 0: the same function of the same weights)
        for n, p in ours.named_parameters():
            if "lora_" in n:
                p.copy_(ref_lora[n.split("base_model.model.", 1)[1]])
                copied += 1
    assert copied == len(ref_lora), (copied, len(ref_lora))

    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, ref.config.vocab_size, (a.batch, a.seq), generator=g) for _ in range(a.steps)]

    def run(model, loss_fn) -> list[float]:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
        losses = []
        for ids in batches:
            ids = ids.to(dev)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = loss_fn(model, ids)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.3)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return losses

    def hf_loss(model, ids):  # what Trainer does: the model's own loss (mean over shifted targets)
        return model(input_ids=ids, labels=ids).loss

    def our_loss(model, ids):  # what qlorafit's step does, with one micro-batch: sum / target count
        s, n = forward_loss(model, {"input_ids": ids, "labels": ids}, "chunked")
        return s / n

    r = run(ref, hf_loss)
    o = run(ours, our_loss)
    rel = [abs(x - y) / abs(x) for x, y in zip(r, o)]
    rec = {"part": "agree", "model": a.model, "batch": a.batch, "seq": a.seq, "levers": levers,
           "recipe_losses": r, "qlorafit_losses": o, "max_rel_diff": max(rel), "first_step_rel_diff": rel[0],
           "provenance": provenance(" ".join(sys.argv))}
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print("step  recipe   qlorafit")
    for i, (x, y) in enumerate(zip(r, o)):
        print(f"{i + 1:4d}  {x:.4f}  {y:.4f}")
    print(f"largest relative difference {max(rel):.2e} (first step {rel[0]:.2e})", flush=True)


if __name__ == "__main__":
    main()
