import torch
import torch.nn.functional as F
from datasets import load_dataset
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling

model_id = "Qwen/Qwen2.5-3B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

ds = load_dataset("json", data_files="train.jsonl", split="train").select(range(200))
ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=1024), batched=True, remove_columns=["text"])
loader = DataLoader(ds, batch_size=4, collate_fn=DataCollatorForLanguageModeling(tokenizer, mlm=False))

all_logits, all_labels = [], []
with torch.no_grad():
    for batch in loader:
        out = model(input_ids=batch["input_ids"].cuda(), attention_mask=batch["attention_mask"].cuda())
        all_logits.append(out.logits[:, :-1])
        all_labels.append(batch["labels"][:, 1:].cuda())

logits = torch.cat(all_logits).float()
labels = torch.cat(all_labels)
loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
mask = labels != -100
accuracy = (logits.argmax(-1)[mask] == labels[mask]).float().mean()
print(f"eval loss {loss.item():.4f}  perplexity {loss.exp().item():.2f}  token accuracy {accuracy.item():.4f}")
