import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
batch_size, max_length = 8, 1024

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.eval()

with open("tickets.jsonl") as f:
    rows = [json.loads(line) for line in f]
texts = [r["text"] for r in rows]
labels = [r["label"] for r in rows]

all_hidden, all_masks = [], []
with torch.no_grad():
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="pt").to(model.device)
        out = model(**enc, output_hidden_states=True)
        all_hidden.append(torch.stack(out.hidden_states))
        all_masks.append(enc["attention_mask"])
        print(f"batch {i // batch_size + 1}/{(len(texts) + batch_size - 1) // batch_size}", flush=True)

hidden = torch.cat(all_hidden, dim=1)
mask = torch.cat(all_masks, dim=0)
pooled = (hidden * mask[None, :, :, None]).sum(2) / mask.sum(1)[None, :, None]

labels = torch.tensor(labels, device=pooled.device)
split = int(0.8 * len(labels))
num_labels = int(labels.max()) + 1
for layer in range(pooled.shape[0]):
    feats = torch.nn.functional.normalize(pooled[layer].float(), dim=-1)
    centroids = torch.stack([feats[:split][labels[:split] == c].mean(0) for c in range(num_labels)])
    pred = (feats[split:] @ centroids.T).argmax(-1)
    print(f"layer {layer:2d} probe accuracy {(pred == labels[split:]).float().mean().item():.3f}")
