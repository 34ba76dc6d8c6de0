import numpy as np
import torch
from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

splits = load_dataset("json", data_files="train.jsonl", split="train").train_test_split(test_size=0.5, seed=1)


def compute_metrics(eval_pred):
    logits, labels = eval_pred
    return {"token_accuracy": float((np.argmax(logits, -1)[:, :-1] == labels[:, 1:]).mean())}


config = SFTConfig(
    output_dir="qwen-sft-eval",
    model_init_kwargs={"dtype": torch.bfloat16},
    per_device_train_batch_size=2,
    per_device_eval_batch_size=4,
    gradient_accumulation_steps=2,
    max_length=1024,
    bf16=True,
    gradient_checkpointing=True,
    eval_strategy="steps",
    eval_steps=4,
    max_steps=20,
    logging_steps=2,
    report_to="none",
)
trainer = SFTTrainer(model="Qwen/Qwen2.5-3B", args=config, train_dataset=splits["train"], eval_dataset=splits["test"],
                     peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
                     compute_metrics=compute_metrics)
trainer.train()
