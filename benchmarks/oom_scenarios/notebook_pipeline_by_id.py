import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

model_id = "Qwen/Qwen3-8B"

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
print(model.get_memory_footprint() / 1024**3, "GiB")

text = "The quick brown fox jumps over the lazy dog. " * 20
enc = tokenizer(text, return_tensors="pt").to(model.device)
with torch.no_grad():
    loss = model(**enc, labels=enc["input_ids"]).loss
print("perplexity:", torch.exp(loss).item())

generator = pipeline(
    "text-generation",
    model=model_id,
    dtype=torch.bfloat16,
    device_map="cuda",
)

questions = [
    "Explain gradient checkpointing in two sentences.",
    "What is the difference between LoRA and full fine-tuning?",
    "Why does a larger batch size need more GPU memory?",
]
for q in questions:
    out = generator(q, max_new_tokens=128, do_sample=False)
    print(out[0]["generated_text"])
