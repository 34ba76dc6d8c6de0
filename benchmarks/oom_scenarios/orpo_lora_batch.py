import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})

dataset = load_dataset("json", data_files="prefs.jsonl", split="train")

peft_config = LoraConfig(
    r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    task_type="CAUSAL_LM",
)

args = ORPOConfig(
    output_dir="qwen3-4b-orpo",
    per_device_train_batch_size=16,
    gradient_accumulation_steps=1,
    learning_rate=8e-6,
    beta=0.1,
    max_length=1024,
    num_train_epochs=1,
    lr_scheduler_type="linear",
    warmup_steps=10,
    bf16=True,
    logging_steps=10,
    save_strategy="no",
    report_to="none",
)

trainer = ORPOTrainer(
    model=model,
    args=args,
    train_dataset=dataset,
    processing_class=tokenizer,
    peft_config=peft_config,
)
trainer.train()
trainer.save_model("qwen3-4b-orpo")
