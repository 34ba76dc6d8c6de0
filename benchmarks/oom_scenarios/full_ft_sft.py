from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

dataset = load_dataset("json", data_files="train.jsonl", split="train")

config = SFTConfig(
    output_dir="qwen-sft",
    per_device_train_batch_size=2,
    gradient_accumulation_steps=4,
    learning_rate=1e-5,
    max_length=1024,
    bf16=True,
    gradient_checkpointing=True,
    num_train_epochs=1,
    logging_steps=5,
    report_to="none",
)
trainer = SFTTrainer(model="Qwen/Qwen2.5-3B", args=config, train_dataset=dataset)
trainer.train()
