import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_model_id = "Qwen/Qwen3-8B"
adapter_dir = "qwen3-8b-support-qlora"
output_dir = "qwen3-8b-support-merged"

base = AutoModelForCausalLM.from_pretrained(base_model_id, dtype=torch.float32, device_map="cuda")
model = PeftModel.from_pretrained(base, adapter_dir)
model = model.merge_and_unload()
model = model.to(torch.bfloat16)

model.save_pretrained(output_dir, safe_serialization=True, max_shard_size="5GB")
AutoTokenizer.from_pretrained(base_model_id).save_pretrained(output_dir)
print("merged model saved to", output_dir)
