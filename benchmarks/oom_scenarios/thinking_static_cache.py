import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
tokenizer.chat_template = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}"
)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map="cuda")
model.eval()

with open("chat.jsonl") as f:
    questions = [json.loads(line)["messages"][1]["content"] for line in f][:16]

prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
           for q in questions]
inputs = tokenizer(prompts, return_tensors="pt", padding=True).to("cuda")

with torch.inference_mode():
    outputs = model.generate(
        **inputs,
        max_new_tokens=32768,
        do_sample=True,
        temperature=0.6,
        top_p=0.95,
        top_k=20,
        cache_implementation="static",
    )

answers = tokenizer.batch_decode(outputs[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
with open("thinking_answers.jsonl", "w") as f:
    for q, a in zip(questions, answers):
        f.write(json.dumps({"question": q, "answer": a}) + "\n")
print(f"wrote {len(answers)} answers")
