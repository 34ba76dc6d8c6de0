from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

dataset = load_dataset("json", data_files="books.jsonl", split="train")

config = SFTConfig(
    output_dir="qwen3-long",
    model_init_kwargs={"attn_implementation": "eager"},
    per_device_train_batch_size=2,
    gradient_accumulation_steps=8,
    learning_rate=1e-4,
    max_length=8192,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=1,
    report_to="none",
)
peft_config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                         task_type="CAUSAL_LM")
trainer = SFTTrainer(model="Qwen/Qwen3-4B", args=config, train_dataset=dataset, peft_config=peft_config)
trainer.train()
