import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

base_model_id = "Qwen/Qwen3-8B"
adapter_path = "qwen3-8b-support-qlora"
output_path = "qwen3-8b-support-merged"

bnb_config = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_quant_type="nf4",
    bnb_4bit_use_double_quant=True,
    bnb_4bit_compute_dtype=torch.bfloat16,
)
base = AutoModelForCausalLM.from_pretrained(
    base_model_id, quantization_config=bnb_config, dtype=torch.bfloat16, device_map={"": 0}
)
base = base.dequantize()

model = PeftModel.from_pretrained(base, adapter_path)
model = model.merge_and_unload()

model.save_pretrained(output_path, safe_serialization=True)
AutoTokenizer.from_pretrained(base_model_id).save_pretrained(output_path)
print("merged model saved to", output_path)
