import numpy as np
import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen3-4B"
labels = ["billing", "login", "shipping", "refund", "bug", "feature_request", "account", "other"]

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=len(labels), dtype=torch.bfloat16)
model.config.pad_token_id = tokenizer.pad_token_id

model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, task_type="SEQ_CLS",
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
model.print_trainable_parameters()

ds = load_dataset("json", data_files="tickets.jsonl", split="train").train_test_split(test_size=0.1, seed=42)


def tokenize(batch):
    return tokenizer(batch["text"], truncation=True)


ds = ds.map(tokenize, batched=True, remove_columns=["text"])


def compute_metrics(eval_pred):
    logits, y = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == y).mean())}


args = TrainingArguments(
    output_dir="qwen3-4b-ticket-router",
    per_device_train_batch_size=8,
    per_device_eval_batch_size=8,
    learning_rate=1e-4,
    num_train_epochs=2,
    weight_decay=0.01,
    gradient_checkpointing=True,
    eval_strategy="epoch",
    save_strategy="epoch",
    bf16=True,
    logging_steps=10,
    report_to="none",
)
trainer = Trainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["test"],
                  data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
trainer.train()
