import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen2.5-3B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
model.print_trainable_parameters()

max_length = model.config.max_position_embeddings
dataset = load_dataset("json", data_files="mixed.jsonl", split="train")
dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True,
                      remove_columns=["text"])

args = TrainingArguments(
    output_dir="qwen2.5-3b-docs-lora",
    per_device_train_batch_size=4,
    gradient_accumulation_steps=4,
    gradient_checkpointing=True,
    learning_rate=2e-4,
    num_train_epochs=2,
    lr_scheduler_type="cosine",
    warmup_steps=5,
    bf16=True,
    logging_steps=5,
    save_strategy="epoch",
    report_to="none",
)
trainer = Trainer(model=model, args=args, train_dataset=dataset,
                  data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
trainer.train()
model.save_pretrained("qwen2.5-3b-docs-lora")
