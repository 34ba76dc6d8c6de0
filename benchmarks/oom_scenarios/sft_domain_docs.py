from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)

dataset = load_dataset("json", data_files="mixed.jsonl", split="train")


def tokenize(batch):
    texts = [f"### Document\n{text}" for text in batch["text"]]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {"input_ids": [x + [tokenizer.eos_token_id] for x in ids]}


dataset = dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)

config = SFTConfig(
    output_dir="qwen3-4b-domain-docs-lora",
    max_length=2048,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=4,
    gradient_checkpointing=True,
    learning_rate=2e-4,
    lr_scheduler_type="cosine",
    warmup_steps=5,
    num_train_epochs=2,
    bf16=True,
    logging_steps=1,
    save_strategy="epoch",
    report_to="none",
    model_init_kwargs={"dtype": "bfloat16"},
    dataset_kwargs={"skip_prepare_dataset": True},
)
trainer = SFTTrainer(
    model=model_id,
    args=config,
    train_dataset=dataset,
    processing_class=tokenizer,
    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
)
trainer.train()
trainer.save_model()
