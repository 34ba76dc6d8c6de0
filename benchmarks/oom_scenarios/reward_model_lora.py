import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

model_id = "Qwen/Qwen2.5-7B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=1, dtype=torch.bfloat16,
                                                           device_map={"": 0})
model.config.pad_token_id = tokenizer.pad_token_id

dataset = load_dataset("json", data_files="prefs.jsonl", split="train")

config = RewardConfig(
    output_dir="qwen2.5-7b-reward-lora",
    per_device_train_batch_size=2,
    gradient_accumulation_steps=8,
    learning_rate=1e-4,
    max_length=2048,
    bf16=True,
    gradient_checkpointing=True,
    num_train_epochs=1,
    logging_steps=5,
    report_to="none",
)
peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="SEQ_CLS")
trainer = RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                        peft_config=peft_config)
trainer.train()
trainer.save_model()
