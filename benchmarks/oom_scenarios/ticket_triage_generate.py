import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-8B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda").eval()

CATEGORIES = ["billing", "login", "bug report", "feature request", "outage", "data export", "integration", "other"]

with open("tickets.jsonl") as f:
    tickets = [json.loads(line) for line in f]
print(f"{len(tickets)} tickets")


def build_prompt(text):
    return (f"Classify the support ticket into one of: {', '.join(CATEGORIES)}.\n\n"
            f"Ticket:\n{text}\n\nCategory:")


predictions = []
batch_size = 4
for i in range(0, len(tickets), batch_size):
    batch = tickets[i:i + batch_size]
    inputs = tokenizer([build_prompt(t["text"]) for t in batch], return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    for seq in out[:, inputs["input_ids"].shape[1]:]:
        predictions.append(tokenizer.decode(seq, skip_special_tokens=True).strip())
    print(f"{i + len(batch)}/{len(tickets)}", flush=True)

correct = sum(CATEGORIES[t["label"]] in p for t, p in zip(tickets, predictions))
print(f"accuracy: {correct / len(tickets):.3f}")
