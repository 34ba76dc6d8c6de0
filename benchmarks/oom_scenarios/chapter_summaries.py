import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

with open("books.jsonl") as f:
    books = [json.loads(line)["text"] for line in f]
prompts = [f"Summarize the opening chapters of the following book in one paragraph.\n\n{text}" for text in books]

batch_size = 8
summaries = []
for i in range(0, len(prompts), batch_size):
    batch = tokenizer(prompts[i:i + batch_size], truncation=True, max_length=6144, padding=True,
                      return_tensors="pt").to(model.device)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=256, num_beams=4, length_penalty=1.0, early_stopping=True)
    summaries.extend(tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    print(f"{len(summaries)}/{len(prompts)} summaries", flush=True)

with open("chapter_summaries.jsonl", "w") as f:
    for summary in summaries:
        f.write(json.dumps({"summary": summary}) + "\n")
