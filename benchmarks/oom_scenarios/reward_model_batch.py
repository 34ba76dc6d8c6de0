import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=1, dtype=torch.bfloat16,
                                                           device_map={"": 0})
model.config.pad_token_id = tokenizer.pad_token_id

dataset = load_dataset("json", data_files="prefs.jsonl", split="train").train_test_split(test_size=0.1, seed=42)

config = RewardConfig(
    output_dir="qwen3-4b-rm",
    per_device_train_batch_size=32,
    per_device_eval_batch_size=32,
    gradient_accumulation_steps=1,
    learning_rate=5e-5,
    lr_scheduler_type="cosine",
    warmup_steps=5,
    num_train_epochs=2,
    max_length=2048,
    bf16=True,
    eval_strategy="steps",
    eval_steps=20,
    logging_steps=5,
    report_to="none",
)
trainer = RewardTrainer(
    model=model,
    args=config,
    train_dataset=dataset["train"],
    eval_dataset=dataset["test"],
    processing_class=tokenizer,
    peft_config=LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules="all-linear", task_type="SEQ_CLS"),
)
trainer.train()
trainer.save_model()
