import torch
from transformers import pipeline

generator = pipeline("text-generation", model="meta-llama/Llama-3.1-8B", dtype=torch.bfloat16, device_map="cuda")

prompts = [
    "The three most important things to know about GPU memory are",
    "Write a short poem about the ocean:",
    "Explain the difference between a process and a thread.",
]
for prompt in prompts:
    result = generator(prompt, max_new_tokens=128, do_sample=True, temperature=0.7, top_p=0.9)
    print(result[0]["generated_text"])
    print("-" * 80)
