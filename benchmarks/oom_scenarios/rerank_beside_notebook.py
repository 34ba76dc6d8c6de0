import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16).to("cuda").eval()

yes_id = tokenizer.convert_tokens_to_ids("y")
no_id = tokenizer.convert_tokens_to_ids("n")

with open("mixed.jsonl") as f:
    docs = [json.loads(line)["text"] for line in f]
queries = [" ".join(d.split()[:6]) for d in docs[:20]]


def format_pair(query, doc):
    return (f"Judge whether the Document meets the requirements based on the Query. Answer only \"y\" or \"n\".\n"
            f"Query: {query}\nDocument: {doc}\nAnswer:")


@torch.no_grad()
def score(query, candidates, batch_size=8):
    out = []
    for i in range(0, len(candidates), batch_size):
        pairs = [format_pair(query, d) for d in candidates[i:i + batch_size]]
        enc = tokenizer(pairs, padding=True, truncation=True, max_length=1024, return_tensors="pt").to("cuda")
        logits = model(**enc).logits[:, -1, :]
        pair_logits = torch.stack([logits[:, no_id], logits[:, yes_id]], dim=-1).float()
        out.extend(torch.log_softmax(pair_logits, dim=-1)[:, 1].exp().tolist())
    return out


for q in queries:
    scores = score(q, docs[:64])
    top = sorted(range(len(scores)), key=lambda i: -scores[i])[:5]
    print(q, "->", top)
