import numpy as np
import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen2.5-3B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))

raw = load_dataset("json", data_files="train.jsonl", split="train").train_test_split(test_size=40, seed=0)
tokenized = raw.map(lambda b: tokenizer(b["text"], truncation=True, max_length=1024), batched=True,
                    remove_columns=["text"])


def preprocess_logits_for_metrics(logits, labels):
    return torch.softmax(logits.float(), dim=-1)


def compute_metrics(eval_pred):
    probs, labels = eval_pred.predictions, eval_pred.label_ids
    probs, labels = probs[:, :-1], labels[:, 1:]
    mask = labels != -100
    conf = probs.max(-1)[mask]
    pred = probs.argmax(-1)[mask]
    correct = (pred == labels[mask]).astype(np.float32)
    bins = np.linspace(0, 1, 11)
    ece = 0.0
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return {"accuracy": float(correct.mean()), "ece": float(ece)}


args = TrainingArguments(
    output_dir="qwen2.5-3b-lora-calibration",
    per_device_train_batch_size=2,
    per_device_eval_batch_size=8,
    gradient_accumulation_steps=4,
    learning_rate=2e-4,
    num_train_epochs=1,
    bf16=True,
    eval_strategy="steps",
    eval_steps=5,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=tokenized["train"],
    eval_dataset=tokenized["test"],
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    compute_metrics=compute_metrics,
    preprocess_logits_for_metrics=preprocess_logits_for_metrics,
)
trainer.train()
