import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, get_cosine_schedule_with_warmup

model_id = "Qwen/Qwen2.5-3B"
batch_size = 2
accumulation_steps = 16
device = "cuda"

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16).to(device)
model.gradient_checkpointing_enable()
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))

dataset = load_dataset("json", data_files="train.jsonl", split="train")
dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=1024), batched=True,
                      remove_columns=["text"])
loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                    collate_fn=DataCollatorForLanguageModeling(tokenizer, mlm=False))

optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
scheduler = get_cosine_schedule_with_warmup(optimizer, 10, len(loader) // accumulation_steps)

model.train()
total_loss = 0
for step, batch in enumerate(loader):
    batch = {k: v.to(device) for k, v in batch.items()}
    outputs = model(**batch)
    total_loss = total_loss + outputs.loss / accumulation_steps
    if (step + 1) % accumulation_steps == 0:
        total_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        print(f"step {(step + 1) // accumulation_steps}: loss {total_loss.item():.4f}")
        total_loss = 0
