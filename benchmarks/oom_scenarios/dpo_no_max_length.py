from datasets import load_dataset
from peft import LoraConfig
from trl import DPOConfig, DPOTrainer

dataset = load_dataset("json", data_files="prefs_long.jsonl", split="train")

config = DPOConfig(
    output_dir="qwen2.5-3b-dpo-lora",
    per_device_train_batch_size=1,
    gradient_accumulation_steps=8,
    learning_rate=5e-6,
    beta=0.1,
    max_length=None,
    bf16=True,
    gradient_checkpointing=True,
    num_train_epochs=1,
    logging_steps=5,
    report_to="none",
)
peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = DPOTrainer(model="Qwen/Qwen2.5-3B", args=config, train_dataset=dataset, peft_config=peft_config)
trainer.train()
trainer.save_model()
