import torch
import torch.nn.functional as F
from datasets import load_dataset
from transformers import AutoModel, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
max_length, batch_size = 8192, 8

tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
# the embedding recipe loads the model with attn_implementation="flash_attention_2"; flash-attn does not build on
# this machine, so the plain PyTorch implementation instead
model = AutoModel.from_pretrained(model_id, dtype=torch.bfloat16, attn_implementation="eager", device_map="cuda")
model.eval()

books = load_dataset("json", data_files="books.jsonl", split="train")["text"]


@torch.no_grad()
def embed(texts):
    vectors = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt").to(model.device)
        hidden = model(**batch).last_hidden_state
        vectors.append(F.normalize(hidden[:, -1].float(), p=2, dim=-1).cpu())  # last-token pooling
        print(f"embedded {start + hidden.shape[0]}/{len(texts)} books", flush=True)
    return torch.cat(vectors)


index = embed(books)
torch.save(index, "books_index.pt")
query = embed(["a story about a long journey at sea"])
print("closest books:", (index @ query.T).squeeze(-1).topk(5).indices.tolist())
