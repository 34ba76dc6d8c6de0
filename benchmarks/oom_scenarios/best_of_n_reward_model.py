import json

import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

policy_id = "Qwen/Qwen3-4B"
reward_id = "Qwen/Qwen2.5-7B"
n = 4

tokenizer = AutoTokenizer.from_pretrained(policy_id, padding_side="left")
policy = AutoModelForCausalLM.from_pretrained(policy_id, dtype=torch.bfloat16, device_map="cuda").eval()

rm_tokenizer = AutoTokenizer.from_pretrained(reward_id)
reward_model = AutoModelForSequenceClassification.from_pretrained(reward_id, num_labels=1, dtype=torch.bfloat16,
                                                                  device_map="cuda").eval()
reward_model.config.pad_token_id = rm_tokenizer.pad_token_id

prompts = load_dataset("json", data_files="prefs.jsonl", split="train").select(range(64))["prompt"]

best = []
for start in range(0, len(prompts), 8):
    batch = prompts[start:start + 8]
    inputs = tokenizer(batch, padding=True, return_tensors="pt").to(policy.device)
    with torch.no_grad():
        out = policy.generate(**inputs, max_new_tokens=256, do_sample=True, temperature=0.8, top_p=0.95,
                              num_return_sequences=n)
    completions = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    texts = [batch[i // n] + c for i, c in enumerate(completions)]
    rm_inputs = rm_tokenizer(texts, padding=True, truncation=True, max_length=2048, return_tensors="pt")
    with torch.no_grad():
        scores = reward_model(**rm_inputs.to(reward_model.device)).logits.squeeze(-1).view(len(batch), n)
    for i, p in enumerate(batch):
        j = scores[i].argmax().item()
        best.append({"prompt": p, "completion": completions[i * n + j], "score": scores[i, j].item()})
    print(f"{start + len(batch)}/{len(prompts)}", flush=True)

with open("best_of_n.jsonl", "w") as f:
    for row in best:
        f.write(json.dumps(row) + "\n")
