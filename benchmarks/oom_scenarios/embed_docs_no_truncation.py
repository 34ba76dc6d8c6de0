import torch
import torch.nn.functional as F
from datasets import load_dataset
from transformers import AutoModel, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModel.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda").eval()

docs = load_dataset("json", data_files="mixed.jsonl", split="train")["text"]


@torch.no_grad()
def embed(texts, batch_size=32):
    vectors = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, return_tensors="pt").to(model.device)
        hidden = model(**batch).last_hidden_state
        vectors.append(F.normalize(hidden[:, -1].float(), p=2, dim=-1).cpu())
        print(f"embedded {start + hidden.shape[0]}/{len(texts)}", flush=True)
    return torch.cat(vectors)


embeddings = embed(docs)
scores = embeddings @ embeddings.T
print("mean similarity:", scores.mean().item())
torch.save(embeddings, "mixed_embeddings.pt")
