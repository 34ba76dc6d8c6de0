import copy

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_id = "Qwen/Qwen3-8B"
adapter_dir = "qwen3-8b-support-qlora"
out_dir = "qwen3-8b-support-merged-bf16"

tokenizer = AutoTokenizer.from_pretrained(base_id)
base = AutoModelForCausalLM.from_pretrained(base_id, dtype=torch.bfloat16, device_map="cuda")
model = PeftModel.from_pretrained(base, adapter_dir)
model.eval()

prompts = [
    "How do I reset my password?",
    "My order arrived damaged, what should I do?",
    "Can I change the shipping address after checkout?",
]
batch = tokenizer(prompts, return_tensors="pt", padding=True).to("cuda")

merged = copy.deepcopy(model).merge_and_unload()
merged.eval()

with torch.no_grad():
    ref = model(**batch).logits
    out = merged(**batch).logits
print("max abs diff adapter vs merged:", (ref - out).abs().max().item())

merged.save_pretrained(out_dir)
tokenizer.save_pretrained(out_dir)
print("saved", out_dir)
