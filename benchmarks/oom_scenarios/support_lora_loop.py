import json
import math
import random

import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

model_id = "Qwen/Qwen3-4B"
batch_size, grad_accum, max_length, epochs, eval_every = 4, 4, 1024, 1, 25

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
model.print_trainable_parameters()

with open("train.jsonl") as f:
    texts = [json.loads(line)["text"] for line in f]
random.seed(0)
random.shuffle(texts)
train_texts, val_texts = texts[:360], texts[360:]


def collate(batch):
    enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc


train_loader = DataLoader(train_texts, batch_size=batch_size, shuffle=True, collate_fn=collate)
val_loader = DataLoader(val_texts, batch_size=batch_size, collate_fn=collate)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.0)
total_updates = math.ceil(len(train_loader) / grad_accum) * epochs
scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=total_updates)


def evaluate():
    model.eval()
    losses = []
    with torch.no_grad():
        for batch in val_loader:
            batch = {k: v.to(model.device) for k, v in batch.items()}
            losses.append(model(**batch).loss.item())
    return sum(losses) / len(losses)


model.train()
update = 0
for epoch in range(epochs):
    for step, batch in enumerate(train_loader):
        if step % (eval_every * grad_accum) == 0:
            val_loss = evaluate()
            print(f"update {update}: val loss {val_loss:.4f} ppl {math.exp(min(val_loss, 20)):.1f}", flush=True)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        loss = model(**batch).loss / grad_accum
        loss.backward()
        if (step + 1) % grad_accum == 0 or step + 1 == len(train_loader):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            update += 1
            print(f"epoch {epoch} update {update}/{total_updates} loss {loss.item() * grad_accum:.4f}", flush=True)
print(f"final val loss {evaluate():.4f}")
model.save_pretrained("qwen3-4b-support-lora")
