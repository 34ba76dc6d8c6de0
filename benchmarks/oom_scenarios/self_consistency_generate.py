import json
from collections import Counter

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

with open("prefs.jsonl") as f:
    questions = [json.loads(line)["prompt"] for line in f][:64]
prompts = [f"Question: {q}\nThink step by step, then give the final answer after 'Answer:'.\n" for q in questions]

gen_config = GenerationConfig(
    do_sample=True,
    temperature=0.7,
    top_p=0.95,
    num_return_sequences=32,
    max_new_tokens=512,
    pad_token_id=tokenizer.pad_token_id,
    eos_token_id=tokenizer.eos_token_id,
)

batch_size = 16
results = []
for start in range(0, len(prompts), batch_size):
    batch = prompts[start:start + batch_size]
    inputs = tokenizer(batch, return_tensors="pt", padding=True).to(model.device)
    with torch.inference_mode():
        out = model.generate(**inputs, generation_config=gen_config)
    texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    for i, q in enumerate(batch):
        samples = texts[i * gen_config.num_return_sequences:(i + 1) * gen_config.num_return_sequences]
        answers = [s.split("Answer:")[-1].strip()[:50] for s in samples]
        results.append({"prompt": q, "answer": Counter(answers).most_common(1)[0][0]})
    print(f"{len(results)}/{len(prompts)} questions done", flush=True)

with open("self_consistency.jsonl", "w") as f:
    for r in results:
        f.write(json.dumps(r) + "\n")
