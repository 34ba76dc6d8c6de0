import math

import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer, TrainingArguments

model_id = "Qwen/Qwen2.5-3B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
model.print_trainable_parameters()

train = load_dataset("json", data_files="train.jsonl", split="train")
train = train.map(lambda b: tokenizer(b["text"], truncation=True, max_length=1024), batched=True,
                  remove_columns=["text"])

docs = load_dataset("json", data_files="mixed.jsonl", split="train").select(range(60))
docs = docs.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])

args = TrainingArguments(
    output_dir="qwen2.5-3b-docs-lora",
    per_device_train_batch_size=2,
    per_device_eval_batch_size=4,
    gradient_accumulation_steps=4,
    gradient_checkpointing=True,
    learning_rate=2e-4,
    warmup_steps=5,
    num_train_epochs=1,
    bf16=True,
    eval_strategy="steps",
    eval_steps=5,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=docs,
                  data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
trainer.train()
metrics = trainer.evaluate()
print("perplexity:", math.exp(metrics["eval_loss"]))
trainer.save_model()
