import numpy as np
import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer, TrainingArguments

model_id = "Qwen/Qwen2.5-3B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))

dataset = load_dataset("json", data_files="train.jsonl", split="train")
dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=1024), batched=True,
                      remove_columns=["text"])
splits = dataset.train_test_split(test_size=0.25, seed=42)

args = TrainingArguments(
    output_dir="qwen2.5-3b-lora",
    per_device_train_batch_size=2,
    per_device_eval_batch_size=8,
    gradient_accumulation_steps=4,
    gradient_checkpointing=True,
    learning_rate=2e-4,
    max_steps=10,
    bf16=True,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
trainer = Trainer(model=model, args=args, train_dataset=splits["train"],
                  data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
trainer.train()

predictions = trainer.predict(splits["test"])
pred_ids = np.argmax(predictions.predictions, axis=-1)
labels = predictions.label_ids
mask = labels[:, 1:] != -100
accuracy = (pred_ids[:, :-1] == labels[:, 1:])[mask].mean()
print(predictions.metrics, f"next-token accuracy {accuracy:.4f}")
