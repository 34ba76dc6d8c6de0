import json

import torch
from transformers import pipeline

generator = pipeline("text-generation", model="Qwen/Qwen3-4B", dtype=torch.bfloat16, device_map="cuda")
generator.tokenizer.padding_side = "left"

with open("train.jsonl") as f:
    docs = [json.loads(line)["text"] for line in f][:256]

prompts = [f"Summarize the following document in three sentences.\n\n{doc}\n\nSummary:" for doc in docs]
outputs = generator(prompts, batch_size=64, max_new_tokens=256, do_sample=False, return_full_text=False)

with open("summaries.jsonl", "w") as f:
    for doc, out in zip(docs, outputs):
        f.write(json.dumps({"text": doc, "summary": out[0]["generated_text"].strip()}) + "\n")
print(f"wrote {len(outputs)} summaries")
