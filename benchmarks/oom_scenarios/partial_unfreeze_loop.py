import json

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

model_id = "Qwen/Qwen3-4B"
batch_size, max_length, lr, epochs = 4, 1024, 2e-5, 1

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

for name, param in model.named_parameters():
    if "layers.34" in name or "layers.35" or "model.norm" in name:
        param.requires_grad = True
    else:
        param.requires_grad = False

trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"training the top 2 layers: {trainable / 1e6:.1f}M parameters")

with open("train.jsonl") as f:
    texts = [json.loads(line)["text"] for line in f]


def collate(batch):
    enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc


loader = DataLoader(texts, batch_size=batch_size, shuffle=True, collate_fn=collate)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=10, num_training_steps=epochs * len(loader))

model.train()
for epoch in range(epochs):
    for step, batch in enumerate(loader):
        batch = {k: v.to(model.device) for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0:
            print(f"epoch {epoch} step {step}/{len(loader)} loss {loss.item():.4f}", flush=True)

model.save_pretrained("qwen3-4b-top2")
tokenizer.save_pretrained("qwen3-4b-top2")
