import json

import torch
from transformers import BitsAndBytesConfig, pipeline

bnb_config = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_quant_type="nf4",
    bnb_4bit_compute_dtype=torch.bfloat16,
    bnb_4bit_use_double_quant=True,
)

generator = pipeline(
    "text-generation",
    model="Qwen/Qwen3-8B",
    dtype=torch.bfloat16,
    device_map="cuda",
    quantization_config=bnb_config,
)

with open("train.jsonl") as f:
    docs = [json.loads(line)["text"] for line in f][:16]

for doc in docs:
    prompt = f"Write a one-line title for this text.\n\n{doc[:1500]}\n\nTitle:"
    out = generator(prompt, max_new_tokens=32, do_sample=False, return_full_text=False)
    print(out[0]["generated_text"].strip())
