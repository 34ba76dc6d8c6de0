import json
import random

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-8B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda").eval()

rng = random.Random(0)
questions = []
with open("prefs.jsonl") as f:
    for line in f:
        row = json.loads(line)
        words = row["chosen"].split() + row["rejected"].split()
        options = [" ".join(rng.sample(words, 8)) for _ in range(4)]
        questions.append({"question": row["prompt"], "options": options, "answer": rng.randrange(4)})
print(f"{len(questions)} questions")

prompts, texts = [], []
for q in questions:
    prompt = f"Question: {q['question']}\nAnswer:"
    for option in q["options"]:
        prompts.append(prompt)
        texts.append(f"{prompt} {option}")

enc = tokenizer(texts, padding=True, return_tensors="pt").to(model.device)
prompt_lens = [len(tokenizer(p)["input_ids"]) for p in prompts]

with torch.no_grad():
    logits = model(**enc).logits

logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
token_lp = logprobs.gather(-1, enc["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
mask = enc["attention_mask"][:, 1:].clone()
for i, n in enumerate(prompt_lens):
    mask[i, : n - 1] = 0
scores = (token_lp * mask).sum(-1).view(len(questions), 4)
pred = scores.argmax(-1).tolist()
acc = sum(p == q["answer"] for p, q in zip(pred, questions)) / len(questions)
print(f"accuracy: {acc:.3f}")
