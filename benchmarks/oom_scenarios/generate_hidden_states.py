import json

import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda").eval()

docs = load_dataset("json", data_files="train.jsonl", split="train").select(range(120))["text"]
prompts = [f"Document:\n{d}\n\nSummarize the document above in three sentences.\nSummary:" for d in docs]

batch_size = 24
features, summaries = [], []
for start in range(0, len(prompts), batch_size):
    inputs = tokenizer(prompts[start:start + batch_size], padding=True, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=128,
            do_sample=False,
            return_dict_in_generate=True,
            output_hidden_states=True,
        )
    # last layer's state of every generated token, averaged: features for the hallucination probe
    steps = torch.stack([h[-1][:, -1, :] for h in out.hidden_states[1:]], dim=1)
    features.append(steps.float().mean(dim=1).cpu())
    new_tokens = out.sequences[:, inputs["input_ids"].shape[1]:]
    summaries += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    print(f"{start + len(new_tokens)}/{len(prompts)} done", flush=True)

torch.save(torch.cat(features), "probe_features.pt")
with open("summaries.jsonl", "w") as f:
    for s in summaries:
        f.write(json.dumps({"summary": s}) + "\n")
