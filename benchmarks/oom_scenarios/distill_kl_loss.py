import torch
import torch.nn.functional as F
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling

teacher_id = "Qwen/Qwen3-8B"
student_id = "Qwen/Qwen3-4B"
temperature = 2.0
alpha = 0.5

tokenizer = AutoTokenizer.from_pretrained(student_id)
teacher = AutoModelForCausalLM.from_pretrained(teacher_id, dtype=torch.bfloat16, device_map={"": 0})
teacher.eval()
student = AutoModelForCausalLM.from_pretrained(student_id, dtype=torch.bfloat16, device_map={"": 0})
student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
student.enable_input_require_grads()
student = get_peft_model(student, LoraConfig(r=64, lora_alpha=128, target_modules="all-linear", task_type="CAUSAL_LM"))

ds = load_dataset("json", data_files="train.jsonl", split="train")
ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=1024), batched=True, remove_columns=["text"])
loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=DataCollatorForLanguageModeling(tokenizer, mlm=False))
optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4)

student.train()
for step, batch in enumerate(loader):
    batch = {k: v.to("cuda") for k, v in batch.items()}
    with torch.no_grad():
        teacher_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    out = student(**batch)
    mask = (batch["labels"] != -100).unsqueeze(-1)
    s = F.log_softmax(out.logits.float() / temperature, dim=-1)
    t = F.softmax(teacher_logits.float() / temperature, dim=-1)
    kd = (F.kl_div(s, t, reduction="none") * mask).sum() / mask.sum() * temperature**2
    loss = alpha * kd + (1 - alpha) * out.loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if step % 10 == 0:
        print(f"step {step} loss {loss.item():.4f} kd {kd.item():.4f} ce {out.loss.item():.4f}")

student.save_pretrained("qwen3-4b-distilled-lora")
