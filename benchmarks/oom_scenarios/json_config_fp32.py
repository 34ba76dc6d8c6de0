import json

import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

with open("configs/qwen3_8b_lora.json") as f:
    cfg = json.load(f)

tokenizer = AutoTokenizer.from_pretrained(cfg["model_name_or_path"])
model = AutoModelForCausalLM.from_pretrained(
    cfg["model_name_or_path"],
    dtype=getattr(torch, cfg["torch_dtype"]),
    device_map={"": 0},
)
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()

model = get_peft_model(model, LoraConfig(
    r=cfg["lora_r"],
    lora_alpha=cfg["lora_alpha"],
    lora_dropout=cfg["lora_dropout"],
    target_modules=cfg["lora_target_modules"],
    task_type="CAUSAL_LM",
))
model.print_trainable_parameters()

dataset = load_dataset("json", data_files=cfg["train_file"], split="train")
dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=cfg["max_length"]),
                      batched=True, remove_columns=["text"])

args = TrainingArguments(
    output_dir=cfg["output_dir"],
    per_device_train_batch_size=cfg["per_device_train_batch_size"],
    gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
    learning_rate=cfg["learning_rate"],
    num_train_epochs=cfg["num_train_epochs"],
    lr_scheduler_type="cosine",
    warmup_steps=10,
    bf16=True,
    logging_steps=10,
    save_strategy="epoch",
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=dataset,
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
)
trainer.train()
model.save_pretrained(cfg["output_dir"])
