import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

model_id = "Qwen/Qwen2.5-3B"
max_length = 8192

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.gradient_checkpointing_enable()
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
model.print_trainable_parameters()


def tokenize(batch):
    enc = tokenizer(batch["text"], truncation=True, max_length=max_length, padding="max_length")
    enc["labels"] = [[t if m else -100 for t, m in zip(ids, mask)]
                     for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    return enc


dataset = load_dataset("json", data_files="train.jsonl", split="train")
dataset = dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)

args = TrainingArguments(
    output_dir="qwen2.5-3b-lora",
    per_device_train_batch_size=2,
    gradient_accumulation_steps=8,
    learning_rate=2e-4,
    num_train_epochs=1,
    lr_scheduler_type="cosine",
    warmup_steps=10,
    bf16=True,
    logging_steps=10,
    save_steps=100,
    report_to="none",
)
trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator)
trainer.train()
