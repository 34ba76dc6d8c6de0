from datasets import load_dataset
from trl import DPOConfig, DPOTrainer

dataset = load_dataset("json", data_files="prefs.jsonl", split="train")

config = DPOConfig(
    output_dir="qwen3-dpo",
    per_device_train_batch_size=2,
    gradient_accumulation_steps=8,
    learning_rate=5e-7,
    beta=0.1,
    max_length=1024,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=10,
    report_to="none",
)
trainer = DPOTrainer(model="Qwen/Qwen3-4B", args=config, train_dataset=dataset)
trainer.train()
