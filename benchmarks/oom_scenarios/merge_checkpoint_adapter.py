import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_id = "Qwen/Qwen3-8B"
adapter_dir = "qwen3-8b-support-qlora"
out_dir = "qwen3-8b-support-merged"

tokenizer = AutoTokenizer.from_pretrained(base_id)
base = AutoModelForCausalLM.from_pretrained(base_id, dtype=torch.bfloat16, device_map="cuda")
model = PeftModel.from_pretrained(base, adapter_dir)
model = model.merge_and_unload()

messages = [{"role": "user", "content": "My invoice shows a charge twice. Can you help?"}]
prompt = "<|im_start|>user\n" + messages[0]["content"] + "<|im_end|>\n<|im_start|>assistant\n"
inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
print(tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))

model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="4GB")
tokenizer.save_pretrained(out_dir)
print("merged model saved to", out_dir)
