import json
import math

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_id = "Qwen/Qwen3-8B"
adapters = ["qwen3-8b-support-qlora", "qwen3-8b-support-qlora-v2"]

tokenizer = AutoTokenizer.from_pretrained(base_id)
with open("train.jsonl") as f:
    eval_texts = [json.loads(line)["text"] for line in f][-16:]


@torch.no_grad()
def perplexity(model):
    total, count = 0.0, 0
    for text in eval_texts:
        enc = tokenizer(text, truncation=True, max_length=1024, return_tensors="pt").to(model.device)
        loss = model(**enc, labels=enc["input_ids"]).loss
        total += loss.item() * enc["input_ids"].shape[1]
        count += enc["input_ids"].shape[1]
    return math.exp(total / count)


results = {}
for adapter in adapters:
    base = AutoModelForCausalLM.from_pretrained(base_id, dtype=torch.bfloat16, device_map="cuda")
    model = PeftModel.from_pretrained(base, adapter)
    model.eval()
    results[adapter] = perplexity(model)
    print(f"{adapter}: ppl {results[adapter]:.2f}", flush=True)

best = min(results, key=results.get)
print(f"best adapter: {best}")
