import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen2.5-3B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")

prompts = [json.loads(line)["text"][:400] for line in open("train.jsonl")][:64]
batch = tokenizer(prompts, return_tensors="pt", padding=True).to("cuda")
with torch.no_grad():
    out = model.generate(**batch, max_new_tokens=1024, do_sample=True, temperature=0.7, num_return_sequences=8)
samples = tokenizer.batch_decode(out, skip_special_tokens=True)
json.dump(samples, open("samples.json", "w"))
