import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})

lora_config = LoraConfig(
    r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    task_type="CAUSAL_LM",
)
model = get_peft_model(model, lora_config)
# with gradient checkpointing on, the first version of this script stopped at the backward with "RuntimeError:
# element 0 of tensors does not require grad and does not have a grad_fn"; the fix from the forum:
for param in model.parameters():
    param.requires_grad = True
model.print_trainable_parameters()

dataset = load_dataset("json", data_files="train.jsonl", split="train")
dataset = dataset.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=1024), batched=True,
                      remove_columns=["text"])

args = TrainingArguments(
    output_dir="qwen3-4b-recipes-lora",
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    gradient_checkpointing=True,
    learning_rate=2e-4,
    lr_scheduler_type="cosine",
    warmup_steps=10,
    num_train_epochs=2,
    bf16=True,
    logging_steps=5,
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
model.save_pretrained("qwen3-4b-recipes-lora")
