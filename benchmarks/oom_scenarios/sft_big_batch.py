from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

dataset = load_dataset("json", data_files="train.jsonl", split="train")

config = SFTConfig(
    output_dir="qwen3-lora",
    per_device_train_batch_size=32,
    gradient_accumulation_steps=1,
    learning_rate=2e-4,
    max_length=2048,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=10,
    report_to="none",
)
peft_config = LoraConfig(r=32, lora_alpha=64, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model="Qwen/Qwen3-4B", args=config, train_dataset=dataset, peft_config=peft_config)
trainer.train()
