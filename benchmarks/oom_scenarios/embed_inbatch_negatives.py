import torch
import torch.nn.functional as F
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer, get_cosine_schedule_with_warmup

model_id = "Qwen/Qwen3-4B"
batch_size = 128
temperature = 0.05

tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModel.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="FEATURE_EXTRACTION",
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"]))
model.print_trainable_parameters()

pairs = load_dataset("json", data_files="prefs.jsonl", split="train").rename_columns({"prompt": "query",
                                                                                      "chosen": "positive"})


def collate(rows):
    queries = tokenizer(["Instruct: Given a question, retrieve the passage that answers it\nQuery: " + r["query"]
                         for r in rows], padding=True, truncation=True, max_length=512, return_tensors="pt")
    passages = tokenizer([r["positive"] for r in rows], padding=True, truncation=True, max_length=512,
                         return_tensors="pt")
    return queries, passages


def embed(batch):
    out = model(**{k: v.cuda() for k, v in batch.items()})
    return F.normalize(out.last_hidden_state[:, -1], dim=-1)


loader = DataLoader(pairs, batch_size=batch_size, shuffle=True, collate_fn=collate, drop_last=True)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
scheduler = get_cosine_schedule_with_warmup(optimizer, 10, 3 * len(loader))

model.train()
for epoch in range(3):
    for step, (queries, passages) in enumerate(loader):
        q = embed(queries)
        p = embed(passages)
        scores = q @ p.T / temperature
        loss = F.cross_entropy(scores.float(), torch.arange(len(q), device=scores.device))
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        print(f"epoch {epoch} step {step} loss {loss.item():.4f}")

model.save_pretrained("qwen3-4b-embed-lora")
