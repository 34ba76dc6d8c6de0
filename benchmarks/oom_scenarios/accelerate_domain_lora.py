import glob
import json
import os

import torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

model_id = "Qwen/Qwen3-4B"
run_dir = "runs/qwen3-4b-domain-lora"
max_length, batch_size, accumulation, total_steps, save_every = 512, 1, 8, 2000, 100

accelerator = Accelerator(mixed_precision="bf16", gradient_accumulation_steps=accumulation)

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16)
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
model.print_trainable_parameters()

with open("train.jsonl") as f:
    texts = [json.loads(line)["text"] for line in f]


def collate(batch):
    enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc


loader = DataLoader(texts, batch_size=batch_size, shuffle=True, collate_fn=collate)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=50, num_training_steps=total_steps)
model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

# the job runs on preemptible instances: pick up from the newest state the loop saved
step = 0
saved = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step_*")))
if saved:
    # straight onto the GPU: the default goes through CPU RAM, which is slow for a 7.5 GB state
    accelerator.load_state(saved[-1], map_location="on_device")
    step = int(saved[-1].rsplit("_", 1)[-1])
    accelerator.print(f"resumed from {saved[-1]} at step {step}")

model.train()
while step < total_steps:
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            step += 1
            if step % 10 == 0:
                accelerator.print(f"step {step} loss {loss.item():.4f}")
            if step % save_every == 0:
                accelerator.save_state(os.path.join(run_dir, "checkpoints", f"step_{step:06d}"))
            if step >= total_steps:
                break

accelerator.unwrap_model(model).save_pretrained(os.path.join(run_dir, "final"))
