import numpy as np
import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16)
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))

dataset = load_dataset("json", data_files="train.jsonl", split="train").train_test_split(test_size=0.1, seed=0)
dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=1024), batched=True,
                      remove_columns=["text"])


class TokenCalibration:
    """Next-token accuracy and expected calibration error over the whole eval set (batch_eval_metrics)."""

    def __init__(self, n_bins=15):
        self.n_bins = n_bins
        self.logits, self.labels = [], []

    def __call__(self, eval_pred, compute_result):
        self.logits.append(eval_pred.predictions[:, :-1])
        self.labels.append(eval_pred.label_ids[:, 1:])
        if not compute_result:
            return {}
        confs, hits = [], []
        for logits, labels in zip(self.logits, self.labels):
            mask = labels != -100
            probs = torch.softmax(logits[mask].float(), dim=-1)
            conf, pred = probs.max(dim=-1)
            confs.append(conf)
            hits.append((pred == labels[mask]).float())
        conf, hit = torch.cat(confs).cpu().numpy(), torch.cat(hits).cpu().numpy()
        bins = np.minimum((conf * self.n_bins).astype(int), self.n_bins - 1)
        ece = sum(abs(hit[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
                  for b in range(self.n_bins) if (bins == b).any())
        self.logits, self.labels = [], []
        return {"token_accuracy": float(hit.mean()), "ece": float(ece)}


args = TrainingArguments(
    output_dir="qwen3-4b-qa-lora",
    per_device_train_batch_size=4,
    per_device_eval_batch_size=8,
    gradient_accumulation_steps=4,
    gradient_checkpointing=True,
    learning_rate=2e-4,
    num_train_epochs=1,
    bf16=True,
    eval_strategy="steps",
    eval_steps=10,
    batch_eval_metrics=True,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=dataset["train"],
    eval_dataset=dataset["test"],
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    compute_metrics=TokenCalibration(),
)
trainer.train()
trainer.save_model()
