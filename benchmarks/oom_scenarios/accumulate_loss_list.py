import json
import random

import torch
from torch.utils.data import DataLoader
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

model_id = "Qwen/Qwen3-4B"
micro_batch_size, grad_accum_steps, max_length, epochs = 4, 8, 1024, 1

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


def collate(batch):
    enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc


loader = DataLoader(texts, batch_size=micro_batch_size, shuffle=True, collate_fn=collate)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
num_updates = epochs * len(loader) // grad_accum_steps
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=5, num_training_steps=num_updates)

model.train()
update = 0
for epoch in range(epochs):
    losses = []
    for i, batch in enumerate(loader):
        batch = {k: v.to(model.device) for k, v in batch.items()}
        outputs = model(**batch)
        losses.append(outputs.loss)
        if len(losses) == grad_accum_steps:
            loss = torch.stack(losses).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses = []
            update += 1
            print(f"epoch {epoch} update {update}/{num_updates} loss {loss.item():.4f}")
model.save_pretrained("qwen3-4b-lora")
