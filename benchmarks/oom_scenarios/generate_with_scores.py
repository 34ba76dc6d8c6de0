import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen2.5-3B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")

with open("train.jsonl") as f:
    prompts = [json.loads(line)["text"][:1000] for line in f][:32]

inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
with torch.inference_mode():
    out = model.generate(
        **inputs,
        max_new_tokens=1024,
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
    )
scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
new_tokens = out.sequences[:, inputs["input_ids"].shape[1]:]
for text, logprobs in zip(tokenizer.batch_decode(new_tokens, skip_special_tokens=True), scores):
    print(f"{logprobs.mean().item():.3f}\t{text[:80]}")
