import copy
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

model_id = "Qwen/Qwen3-8B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

with open("books.jsonl") as f:
    document = json.loads(f.readline())["text"][:8000]

system = "Answer questions about the following document.\n\n" + document + "\n\n"
doc_inputs = tokenizer(system, return_tensors="pt").to(model.device)
with torch.no_grad():
    prompt_cache = DynamicCache()
    prompt_cache = model(**doc_inputs, past_key_values=prompt_cache).past_key_values
print("document tokens:", doc_inputs["input_ids"].shape[1])

questions = [f"Question {i}: what does the passage say about w{i * 37}?" for i in range(40)]
sessions = {}
for i, q in enumerate(questions):
    inputs = tokenizer(system + q, return_tensors="pt").to(model.device)
    cache = copy.deepcopy(prompt_cache)
    with torch.no_grad():
        out = model.generate(**inputs, past_key_values=cache, max_new_tokens=64, do_sample=False,
                             return_dict_in_generate=True)
    answer = tokenizer.decode(out.sequences[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    sessions[i] = {"history": out.sequences, "cache": out.past_key_values}
    print(i, answer[:80], flush=True)
