import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

# torchrun --nproc_per_node 2 ddp_lora_moe.py   (two 48 GB cards; the model activates 3B parameters per token)
model_id = "Qwen/Qwen3-30B-A3B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16)
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                         task_type="CAUSAL_LM"))

ds = load_dataset("json", data_files="train.jsonl", split="train")
ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=512), batched=True, remove_columns=["text"])

args = TrainingArguments(output_dir="out-moe-ddp", per_device_train_batch_size=1, gradient_accumulation_steps=8,
                         learning_rate=2e-4, num_train_epochs=1, bf16=True, gradient_checkpointing=True,
                         logging_steps=10, report_to="none")
trainer = Trainer(model=model, args=args, train_dataset=ds,
                  data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
trainer.train()
