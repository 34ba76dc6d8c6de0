from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

dataset = load_dataset("json", data_files="books.jsonl", split="train").train_test_split(test_size=16, seed=0)

config = SFTConfig(
    output_dir="qwen2.5-3b-books-lora",
    model_init_kwargs={"dtype": "bfloat16"},
    max_length=4096,
    per_device_train_batch_size=1,
    gradient_accumulation_steps=8,
    gradient_checkpointing=True,
    learning_rate=1e-4,
    num_train_epochs=2,
    bf16=True,
    eval_strategy="steps",
    eval_steps=5,
    logging_steps=1,
    save_strategy="no",
    report_to="none",
)
trainer = SFTTrainer(
    model="Qwen/Qwen2.5-3B",
    args=config,
    train_dataset=dataset["train"],
    eval_dataset=dataset["test"],
    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
)
trainer.train()
