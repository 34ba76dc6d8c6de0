"""Stress benchmark of the in-place OOM guard (issue 4): an 8B-shaped model under emulated 12, 16 and 24 GiB cards
(torch.cuda.set_per_process_memory_fraction), on a long-tailed dataset (mostly short samples, a few at
max_seq_length, the longest ones in the last steps of the epoch), three stacks side by side:

  qlorafit   `qlorafit.runtime.train.train` with the guard on (the default)
  hf         transformers Trainer + PEFT + bitsandbytes (the tutorials' recipe), no recovery
  hf-auto    the same with auto_find_batch_size=True (restarts the training loop with half the batch)

Each (stack, card) runs in a fresh process. One JSON line per run: completed, error, restarts, optimizer steps
executed vs planned (steps redone), effective batch at the end, tokens/s, and for qlorafit the recoveries and
whether the ledger shows every sample exactly once.

usage (GPU machine): python benchmarks/stress.py --cards 12,16,24 --stacks qlorafit,hf,hf-auto --out $OUT/stress.jsonl
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

GIB = 1024**3
N_SAMPLES = 96           # 6 optimizer steps of 16 sequences
LONG = (88, 89, 94, 95)  # positions (in training order) of the samples at max_seq_length: in the last two steps
MAX_SEQ = 4096
MICRO, ACCUM = 4, 4


def long_tailed_texts(order: list[int]) -> list[str]:
    """Sample i's text; the samples that train at positions LONG get ~3x max_seq_length words (cut at MAX_SEQ)."""
    import random
    rng = random.Random(0)
    words = "the of and to in is was for on that with as by at from model memory train token layer batch".split()
    n_words = [rng.randint(150, 450) for _ in range(N_SAMPLES)]
    for pos in LONG:
        n_words[order[pos]] = MAX_SEQ * 3
    return [" ".join(rng.choice(words) for _ in range(n)) for n in n_words]


def cap(card_gib: float) -> None:
    import torch
    total = torch.cuda.mem_get_info()[1]
    torch.cuda.set_per_process_memory_fraction(card_gib * GIB / total)


def run_qlorafit(model_dir: str, card: float, out: str) -> dict:
    from qlorafit.core import config as C
    from qlorafit.runtime.data import epoch_order
    from qlorafit.runtime.train import train

    order = epoch_order([0] * N_SAMPLES, MICRO, 42, 0, False)  # the loop's own order (seed 42, no grouping)
    data = f"/tmp/stress-{card}.jsonl"
    with open(data, "w") as f:
        for t in long_tailed_texts(order):
            f.write(json.dumps({"text": t}) + "\n")
    run_dir = f"/tmp/stress-qlorafit-{card}"
    cfg = C.from_dict({
        "output_dir": run_dir, "model": {"name_or_path": model_dir, "compute_dtype": "bf16"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
        "data": {"path": data, "max_seq_length": MAX_SEQ, "group_by_length": False},
        "train": {"micro_batch_size": MICRO, "grad_accum": ACCUM, "epochs": 1, "optimizer": "paged_adamw_32bit",
                  "seed": 42, "warmup_steps": 0, "log_every": 1},
    }, "stress")
    cap(card)
    rec = {"stack": "qlorafit", "card_gib": card}
    t0 = time.time()
    try:
        summary = train(cfg, overwrite=True, quiet=True)
        rec.update(completed=True, steps=summary.get("steps"),
                   # end to end over the training loop (load excluded): what a user waits for
                   loop_tokens_per_s=round(summary["tokens"] / summary["seconds"], 1) if summary.get("seconds") else None)
    except Exception as e:  # noqa: BLE001 - the benchmark records any failure
        rec.update(completed=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    rec["wall_s"] = round(time.time() - t0, 1)
    events = [json.loads(x) for x in open(f"{run_dir}/events.jsonl")] if os.path.exists(f"{run_dir}/events.jsonl") else []
    ledger = [json.loads(x) for x in open(f"{run_dir}/ledger.jsonl")] if os.path.exists(f"{run_dir}/ledger.jsonl") else []
    metrics = [json.loads(x) for x in open(f"{run_dir}/metrics.jsonl")] if os.path.exists(f"{run_dir}/metrics.jsonl") else []
    trained = [i for row in ledger for i in row["sample_ids"] if i not in set(row.get("skipped", []))]
    rec.update(
        recoveries=[{k: e.get(k) for k in ("step", "phase", "old_micro_batch", "new_micro_batch", "action")}
                    for e in events if e["kind"] == "oom_recovery"],
        skipped=[e.get("sample_id") for e in events if e["kind"] == "skip_sample"],
        ledger_exact=sorted(trained) == list(range(N_SAMPLES)),
        restarts=0, steps_redone=0, effective_batch=MICRO * ACCUM,  # the guard keeps the step's samples
        tokens_per_s=sorted(m["tokens_per_s"] for m in metrics)[len(metrics) // 2] if metrics else None,
    )
    return rec


def run_hf(model_dir: str, card: float, auto: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, Trainer, TrainerCallback,
                              TrainingArguments)

    tok = AutoTokenizer.from_pretrained(model_dir)
    order = list(range(N_SAMPLES))  # Trainer below reads the rows in order: position = index
    rows = [tok(t, truncation=True, max_length=MAX_SEQ)["input_ids"] for t in long_tailed_texts(order)]
    cap(card)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, device_map="auto", use_cache=False)
    model = prepare_model_for_kbit_training(model)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return N_SAMPLES

        def __getitem__(self, i):
            return {"input_ids": rows[i]}

    def collate(batch):
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), tok.pad_token_id or 0)
        mask = torch.zeros_like(ids)
        for k, b in enumerate(batch):
            ids[k, :len(b["input_ids"])] = torch.tensor(b["input_ids"])
            mask[k, :len(b["input_ids"])] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    class Count(TrainerCallback):
        begins, steps, batch = 0, 0, MICRO

        def on_train_begin(self, args, state, control, **kw):
            Count.begins += 1
            dl = kw.get("train_dataloader")  # auto_find_batch_size shrinks the loader's batch, not the args
            Count.batch = getattr(dl, "batch_size", None) or args.per_device_train_batch_size

        def on_step_end(self, args, state, control, **kw):
            Count.steps += 1

    class InOrder(Trainer):
        def _get_train_sampler(self, *a, **k):  # the recipe's data in file order, so the long samples come last
            return torch.utils.data.SequentialSampler(self.train_dataset)

    args = TrainingArguments(
        output_dir=f"/tmp/stress-hf-{card}", per_device_train_batch_size=MICRO, gradient_accumulation_steps=ACCUM,
        gradient_checkpointing=True, optim="paged_adamw_32bit", learning_rate=2e-4, bf16=True, max_grad_norm=0.3,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[], num_train_epochs=1,
        auto_find_batch_size=auto, seed=42, dataloader_num_workers=0)
    trainer = InOrder(model=model, args=args, train_dataset=Rows(), data_collator=collate, callbacks=[Count()])
    rec = {"stack": "hf-auto" if auto else "hf", "card_gib": card}
    t0 = time.time()
    try:
        trainer.train()
        rec["completed"] = True
    except (torch.OutOfMemoryError, RuntimeError) as e:  # auto_find_batch_size ends in a RuntimeError at batch 0
        rec.update(completed=False, error=f"{type(e).__name__} at optimizer step {trainer.state.global_step}: "
                   f"{str(e).splitlines()[0][:160]}")
    planned = N_SAMPLES // (MICRO * ACCUM)
    wall = time.time() - t0
    done = sum(len(r) for r in rows) if rec["completed"] else None  # restarts retrain: only a finished run counts
    rec.update(loop_tokens_per_s=round(done / wall, 1) if done else None)  # trainer.train(), restarts included
    rec.update(wall_s=round(wall, 1), restarts=max(0, Count.begins - 1), steps_executed=Count.steps,
               steps_redone=max(0, Count.steps - trainer.state.global_step), planned_steps=planned,
               micro_batch_at_end=getattr(trainer, "_train_batch_size", Count.batch),
               effective_batch=getattr(trainer, "_train_batch_size", Count.batch) * ACCUM)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cards", default="12,16,24")
    ap.add_argument("--stacks", default="qlorafit,hf,hf-auto")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        from bench import with_tokenizer
        from gpu_common import build_model, provenance
        stack, card = a.one.split(":")
        path = build_model(a.model)
        with_tokenizer(path)
        rec = run_qlorafit(path, float(card), a.out) if stack == "qlorafit" else run_hf(path, float(card), stack == "hf-auto")
        rec["provenance"] = provenance(" ".join(sys.argv))
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps({k: v for k, v in rec.items() if k != "provenance"}), flush=True)
        return
    for card in a.cards.split(","):
        for stack in a.stacks.split(","):
            env = dict(os.environ)
            if stack != "qlorafit":
                env.pop("PYTORCH_CUDA_ALLOC_CONF", None)  # the recipe runs with the default allocator
            subprocess.run([sys.executable, __file__, "--one", f"{stack}:{card}", "--model", a.model, "--out", a.out],
                           env=env)


if __name__ == "__main__":
    main()
