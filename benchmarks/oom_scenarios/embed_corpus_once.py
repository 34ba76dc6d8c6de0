import json

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModel.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda").eval()

with open("train.jsonl") as f:
    docs = [json.loads(line)["text"] for line in f]
print(f"{len(docs)} documents")


@torch.no_grad()
def embed(texts):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=2048, return_tensors="pt").to(model.device)
    hidden = model(**batch).last_hidden_state
    return F.normalize(hidden[:, -1], p=2, dim=-1)


doc_embeddings = embed(docs)
torch.save(doc_embeddings.cpu(), "corpus_embeddings.pt")
print(doc_embeddings.shape)
