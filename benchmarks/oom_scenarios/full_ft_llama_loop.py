import torch
from datasets import load_dataset
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling

model_id = "meta-llama/Llama-3.1-8B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16).to("cuda")
model.gradient_checkpointing_enable()
model.config.use_cache = False

ds = load_dataset("json", data_files="train.jsonl", split="train")
ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=2048), batched=True, remove_columns=["text"])
loader = DataLoader(ds, batch_size=1, shuffle=True, collate_fn=DataCollatorForLanguageModeling(tokenizer, mlm=False))

optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1)
model.train()
for epoch in range(2):
    for step, batch in enumerate(loader):
        batch = {k: v.to("cuda") for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0:
            print(f"epoch {epoch} step {step} loss {loss.item():.4f}", flush=True)
    model.save_pretrained(f"llama-3.1-8b-ft-epoch{epoch}")
