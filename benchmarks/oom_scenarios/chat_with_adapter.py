import json

import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

adapter_dir = "qwen3-8b-support-qlora"
tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen3-8B")
tokenizer.chat_template = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=torch.bfloat16, device_map="cuda")
model.eval()

with open("chat.jsonl") as f:
    conversations = [json.loads(line)["messages"] for line in f][:8]

for messages in conversations:
    prompt = tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=256, do_sample=True, temperature=0.7, top_p=0.9)
    print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[:200])
    print("-" * 40)
