"""The tutorials' QLoRA recipe, updated to current APIs, measured on the GPU: transformers Trainer + PEFT +
bitsandbytes (NF4, double quant, bf16 compute, prepare_model_for_kbit_training, LoRA r16 on q/k/v/o, dropout 0.05,
gradient checkpointing, paged AdamW 32-bit, bf16, max_grad_norm 0.3, constant schedule).

The tutorial used TRL's SFTTrainer with tokenizer=, max_seq_length=, dataset_text_field= and warmup_ratio, all gone
or renamed in TRL 1.x / transformers 5; SFTTrainer only tokenizes text and hands the batches to Trainer, so Trainer
on pre-tokenized full-length rows is the same training computation.

Records, per configuration: peak device memory used (max over steps of total - free, i.e. what nvidia-smi shows),
torch's peak reserved and allocated, and tokens/s over the steps after the first.

usage: python benchmarks/recipe.py --model /tmp/qf-models/llama-3.1-8b --batch 2 --accum 4 --seq 512 --steps 6 \
           --out $OUT/recipe.jsonl
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


def main():
    import torch
    from gpu_common import GIB, build_model, non_torch_bytes, provenance, used_bytes
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainerCallback, TrainingArguments

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fraction", type=float, default=0.0, help="emulate a smaller card (set_per_process_memory_fraction)")
    ap.add_argument("--auto-find-batch-size", action="store_true")
    a = ap.parse_args()

    path = build_model(a.model)
    if a.fraction:
        torch.cuda.set_per_process_memory_fraction(a.fraction)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, device_map="auto", use_cache=False)
    model = prepare_model_for_kbit_training(model)
    targets = "all-linear" if a.targets == "all-linear" else a.targets.split(",")
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.05, bias="none",
                                             task_type="CAUSAL_LM", target_modules=targets))

    n = a.batch * a.accum * a.steps
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, model.config.vocab_size, (n, a.seq), generator=g)

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return {"input_ids": rows[i], "labels": rows[i], "attention_mask": torch.ones_like(rows[i])}

    class Mem(TrainerCallback):
        def __init__(self):
            self.used = 0
            self.times = []
            self.losses = []

        def on_step_begin(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.t = time.time()

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.times.append(time.time() - self.t)
            self.used = max(self.used, used_bytes())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    mem = Mem()
    args = TrainingArguments(
        output_dir="/tmp/recipe-out", per_device_train_batch_size=a.batch, gradient_accumulation_steps=a.accum,
        gradient_checkpointing=True, optim="paged_adamw_32bit", learning_rate=2e-4, bf16=True, max_grad_norm=0.3,
        warmup_steps=0, lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
        max_steps=a.steps, dataloader_num_workers=0, auto_find_batch_size=a.auto_find_batch_size, seed=0,
    )
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[mem])
    t0 = time.time()
    trainer.train()
    wall = time.time() - t0
    steady = mem.times[1:] or mem.times
    tok_per_step = a.batch * a.accum * a.seq
    rec = {
        "stack": "recipe (Trainer+PEFT+bnb)", "model": a.model, "batch": a.batch, "accum": a.accum, "seq": a.seq,
        "rank": a.rank, "targets": a.targets, "steps": a.steps,
        "used_peak": mem.used, "peak_reserved": torch.cuda.max_memory_reserved(),
        "peak_allocated": torch.cuda.max_memory_allocated(), "non_torch": non_torch_bytes(),
        "tokens_per_s": round(tok_per_step * len(steady) / sum(steady), 1), "wall_s": round(wall, 1),
        "losses": mem.losses, "provenance": provenance(" ".join(sys.argv)),
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"recipe b{a.batch}x{a.accum} s{a.seq}: used {rec['used_peak'] / GIB:.2f} GiB, reserved "
          f"{rec['peak_reserved'] / GIB:.2f}, allocated {rec['peak_allocated'] / GIB:.2f}, {rec['tokens_per_s']} tok/s")


if __name__ == "__main__":
    main()
