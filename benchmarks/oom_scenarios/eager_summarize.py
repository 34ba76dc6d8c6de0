import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda",
                                             attn_implementation="eager")
model.eval()

chapters = [json.loads(line)["text"] for line in open("books.jsonl")][:10]
summaries = []
for i, chapter in enumerate(chapters):
    prompt = f"Summarize the following chapter in a few sentences.\n\n{chapter}\n\nSummary:"
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    print(f"chapter {i}: {inputs['input_ids'].shape[1]} tokens", flush=True)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=256, do_sample=False)
    summaries.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))

with open("summaries.json", "w") as f:
    json.dump(summaries, f, indent=1)
