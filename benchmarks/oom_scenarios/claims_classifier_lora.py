import numpy as np
import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen3-4B"
lines = ["auto", "home", "health", "travel"]

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=len(lines), dtype=torch.bfloat16,
                                                           device_map={"": 0})
model.config.pad_token_id = tokenizer.pad_token_id
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="SEQ_CLS",
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"]))
model.print_trainable_parameters()

claims = load_dataset("json", data_files="claims.jsonl", split="train").train_test_split(test_size=0.25, seed=42)
claims = claims.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=512), batched=True,
                    remove_columns=["text"])


def compute_metrics(eval_pred):
    predictions = np.argmax(eval_pred.predictions, axis=-1)
    return {"accuracy": float((predictions == eval_pred.label_ids).mean())}


args = TrainingArguments(
    output_dir="qwen3-4b-claims",
    per_device_train_batch_size=16,
    per_device_eval_batch_size=512,  # no gradients at eval time, so the whole validation split in one go
    gradient_accumulation_steps=1,
    gradient_checkpointing=True,
    learning_rate=1e-4,
    lr_scheduler_type="linear",
    warmup_steps=10,
    num_train_epochs=2,
    bf16=True,
    eval_strategy="steps",
    eval_steps=25,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=claims["train"],
    eval_dataset=claims["test"],
    data_collator=DataCollatorWithPadding(tokenizer),
    compute_metrics=compute_metrics,
)
trainer.train()
print(trainer.evaluate())
model.save_pretrained("qwen3-4b-claims-lora")
