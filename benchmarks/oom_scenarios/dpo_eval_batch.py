from datasets import load_dataset
from peft import LoraConfig
from trl import DPOConfig, DPOTrainer

dataset = load_dataset("json", data_files="prefs.jsonl", split="train").train_test_split(test_size=0.2, seed=42)

config = DPOConfig(
    output_dir="qwen3-4b-dpo-lora",
    per_device_train_batch_size=1,
    per_device_eval_batch_size=32,
    gradient_accumulation_steps=4,
    learning_rate=5e-6,
    beta=0.1,
    max_length=1536,
    bf16=True,
    gradient_checkpointing=True,
    num_train_epochs=1,
    eval_strategy="steps",
    eval_steps=5,
    logging_steps=5,
    report_to="none",
)
peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = DPOTrainer(model="Qwen/Qwen3-4B", args=config, train_dataset=dataset["train"],
                     eval_dataset=dataset["test"], peft_config=peft_config)
trainer.train()
trainer.save_model()
