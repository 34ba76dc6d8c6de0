import numpy as np
import torch
from datasets import load_dataset
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen2.5-3B"
labels = ["very negative", "negative", "neutral", "positive", "very positive"]

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForSequenceClassification.from_pretrained(
    model_id, num_labels=len(labels), dtype=torch.bfloat16,
    id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
)
model.config.pad_token_id = tokenizer.pad_token_id
model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=16, lora_alpha=32, lora_dropout=0.1,
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"]))

ds = load_dataset("json", data_files="reviews.jsonl", split="train").train_test_split(test_size=0.1, seed=42)
ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=512), batched=True, remove_columns=["text"])


def compute_metrics(eval_pred):
    preds = np.argmax(eval_pred.predictions, axis=-1)
    return {"accuracy": float((preds == eval_pred.label_ids).mean())}


args = TrainingArguments(
    output_dir="qwen2.5-3b-review-cls",
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    gradient_accumulation_steps=1,
    gradient_checkpointing=True,
    learning_rate=1e-4,
    num_train_epochs=3,
    bf16=True,
    eval_strategy="epoch",
    save_strategy="no",
    logging_steps=5,
    report_to="none",
)
trainer = Trainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["test"],
                  data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
trainer.train()
