import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
max_len = 4096

tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()


def encode(texts):
    return tokenizer(texts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")


with open("reviews.jsonl") as f:
    reviews = [json.loads(line) for line in f]
prompts = [f"Write a short, polite reply from the shop to this customer review.\n\nReview: {r['text']}\n\nReply:"
           for r in reviews]

batch_size = 32
replies = []
for i in range(0, len(prompts), batch_size):
    batch = encode(prompts[i:i + batch_size]).to(model.device)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=256, do_sample=True, temperature=0.7, top_p=0.9)
    replies.extend(tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    print(f"{len(replies)}/{len(prompts)} replies", flush=True)

with open("review_replies.jsonl", "w") as f:
    for review, reply in zip(reviews, replies):
        f.write(json.dumps({"review": review["text"], "label": review["label"], "reply": reply}) + "\n")
