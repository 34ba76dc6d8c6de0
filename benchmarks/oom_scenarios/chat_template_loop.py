import json

import torch
from torch.utils.data import DataLoader
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
tokenizer.chat_template = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))

with open("chat.jsonl") as f:
    conversations = [json.loads(line)["messages"] for line in f]


def collate(batch):
    enc = tokenizer.apply_chat_template(batch[0], tokenize=True, return_dict=True, return_tensors="pt")
    enc["labels"] = enc["input_ids"].clone()
    return enc


loader = DataLoader(conversations, batch_size=1, collate_fn=collate)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
accum = 8

model.train()
for epoch in range(2):
    for step, batch in enumerate(loader):
        batch = {k: v.cuda() for k, v in batch.items()}
        loss = model(**batch).loss / accum
        loss.backward()
        if (step + 1) % accum == 0:
            optimizer.step()
            optimizer.zero_grad()
        if step % 8 == 0:
            print(f"epoch {epoch} step {step} loss {loss.item() * accum:.4f}", flush=True)

model.save_pretrained("qwen3-4b-chat-lora")
