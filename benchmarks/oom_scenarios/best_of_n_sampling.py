import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
n_samples = 64
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

with open("prefs.jsonl") as f:
    prompts = [json.loads(line)["prompt"] for line in f][:16]

inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
with torch.inference_mode():
    out = model.generate(
        **inputs,
        max_new_tokens=512,
        do_sample=True,
        temperature=1.0,
        top_p=0.95,
        num_return_sequences=n_samples,
    )
completions = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

with open("candidates.jsonl", "w") as f:
    for i, prompt in enumerate(prompts):
        f.write(json.dumps({"prompt": prompt, "candidates": completions[i * n_samples:(i + 1) * n_samples]}) + "\n")
print(f"wrote {len(completions)} candidates for {len(prompts)} prompts")
