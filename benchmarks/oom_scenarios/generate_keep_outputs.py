import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

with open("train.jsonl") as f:
    docs = [json.loads(line)["text"] for line in f][:64]
prompts = [f"Summarize the following document in three sentences.\n\n{doc}\n\nSummary:" for doc in docs]

batch_size = 8
results = []
for i in range(0, len(prompts), batch_size):
    batch = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True).to(model.device)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=128, do_sample=False, return_dict_in_generate=True)
    results.append((batch["input_ids"].shape[1], out))
    print(f"batch {i // batch_size + 1}/{(len(prompts) + batch_size - 1) // batch_size} done", flush=True)

summaries = []
for prompt_len, out in results:
    summaries.extend(tokenizer.batch_decode(out.sequences[:, prompt_len:], skip_special_tokens=True))
with open("summaries.jsonl", "w") as f:
    for doc, summary in zip(docs, summaries):
        f.write(json.dumps({"document": doc[:200], "summary": summary}) + "\n")
