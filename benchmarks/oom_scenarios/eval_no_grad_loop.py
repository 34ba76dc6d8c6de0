import json
import math

import torch
from torch.utils.data import DataLoader
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

model_id = "Qwen/Qwen3-4B"
max_length = 1024
train_batch_size, eval_batch_size, epochs = 4, 4, 1

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
model.print_trainable_parameters()

with open("train.jsonl") as f:
    texts = [json.loads(line)["text"] for line in f]
val_texts, train_texts = texts[:64], texts[64:]


def collate(batch):
    enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc


train_loader = DataLoader(train_texts, batch_size=train_batch_size, shuffle=True, collate_fn=collate)
val_loader = DataLoader(val_texts, batch_size=eval_batch_size, collate_fn=collate)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
scheduler = get_linear_schedule_with_warmup(optimizer, 10, epochs * len(train_loader))


def evaluate():
    model.eval()
    total = 0.0
    for batch in val_loader:
        batch = {k: v.to(model.device) for k, v in batch.items()}
        outputs = model(**batch)
        total += outputs.loss.item()
    model.train()
    avg = total / len(val_loader)
    return avg, math.exp(avg)


val_loss, val_ppl = evaluate()
print(f"before training: val loss {val_loss:.4f} ppl {val_ppl:.2f}")

model.train()
for epoch in range(epochs):
    for step, batch in enumerate(train_loader):
        batch = {k: v.to(model.device) for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % 10 == 0:
            print(f"epoch {epoch} step {step} loss {loss.item():.4f}")
    val_loss, val_ppl = evaluate()
    print(f"epoch {epoch}: val loss {val_loss:.4f} ppl {val_ppl:.2f}")

model.save_pretrained("qwen3-4b-lora")
