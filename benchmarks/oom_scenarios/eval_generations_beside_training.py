import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-8B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

with open("train.jsonl") as f:
    docs = [json.loads(line)["text"] for line in f][:64]

results = []
for i in range(0, len(docs), 8):
    prompts = [f"Continue the text:\n{doc[:1500]}" for doc in docs[i:i + 8]]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=256, do_sample=True, temperature=0.7, top_p=0.9)
    texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    results.extend({"prompt": p, "completion": t} for p, t in zip(prompts, texts))
    print(f"{len(results)}/{len(docs)} done")

with open("generations.jsonl", "w") as f:
    for r in results:
        f.write(json.dumps(r) + "\n")
