from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

# torchrun --nproc_per_node 2 ddp_long_sample.py
dataset = load_dataset("json", data_files="mixed.jsonl", split="train")

config = SFTConfig(
    output_dir="qwen-lora-sft",
    per_device_train_batch_size=1,
    gradient_accumulation_steps=8,
    learning_rate=2e-4,
    max_length=None,  # keep whole documents
    bf16=True,
    gradient_checkpointing=True,
    num_train_epochs=1,
    logging_steps=10,
    report_to="none",
)
peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model="Qwen/Qwen2.5-3B", args=config, train_dataset=dataset, peft_config=peft_config)
trainer.train()
