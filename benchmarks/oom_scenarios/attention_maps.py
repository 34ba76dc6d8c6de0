import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen2.5-3B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda",
                                             attn_implementation="eager")
model.eval()

with open("books.jsonl") as f:
    book = json.loads(f.readline())["text"]

inputs = tokenizer(book, return_tensors="pt").to(model.device)
print(f"{inputs['input_ids'].shape[1]} tokens")
with torch.no_grad():
    out = model(**inputs, output_attentions=True)

last_layer = out.attentions[-1][0]
received = last_layer.mean(dim=0).sum(dim=0)
top = received.topk(20).indices.tolist()
print("most attended positions:", top)
