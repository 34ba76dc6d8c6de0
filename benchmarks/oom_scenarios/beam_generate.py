import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

questions = [json.loads(line)["text"][:1500] for line in open("train.jsonl")][:16]
inputs = tokenizer(questions, return_tensors="pt", padding=True).to(model.device)
with torch.inference_mode():
    outputs = model.generate(**inputs, max_new_tokens=2048, num_beams=8, early_stopping=True)
answers = tokenizer.batch_decode(outputs[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
json.dump(answers, open("answers.json", "w"))
