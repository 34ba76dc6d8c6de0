from datasets import load_dataset
from peft import LoraConfig
from trl import DPOConfig, DPOTrainer

dataset = load_dataset("json", data_files="prefs.jsonl", split="train")

config = DPOConfig(
    output_dir="qwen3-4b-support-dpo",
    per_device_train_batch_size=4,
    gradient_accumulation_steps=4,
    gradient_checkpointing=True,
    learning_rate=5e-6,
    beta=0.1,
    max_length=1024,
    precompute_ref_log_probs=True,
    precompute_ref_batch_size=256,
    num_train_epochs=1,
    bf16=True,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
    model_init_kwargs={"dtype": "bfloat16"},
)
peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = DPOTrainer(model="Qwen/Qwen3-4B", args=config, train_dataset=dataset, peft_config=peft_config)
trainer.train()
trainer.save_model()
