import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

model_id = "Qwen/Qwen2.5-7B"
device = torch.device("cuda")

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=5)
model.config.pad_token_id = tokenizer.pad_token_id
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=16, lora_alpha=32, lora_dropout=0.1,
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
model.print_trainable_parameters()
model = model.float().to(device)

ds = load_dataset("json", data_files="reviews.jsonl", split="train")
ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=512), batched=True, remove_columns=["text"])
ds = ds.rename_column("label", "labels")
loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer))

optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
model.train()
for epoch in range(3):
    for step, batch in enumerate(loader):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 10 == 0:
            print(f"epoch {epoch} step {step} loss {loss.item():.4f}", flush=True)
model.save_pretrained("qwen2.5-7b-review-classifier")
