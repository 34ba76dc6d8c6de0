from accelerate import PartialState
from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

model_id = "Qwen/Qwen3-8B"

model_kwargs = dict(
    torch_dtype="bfloat16",
    attn_implementation="sdpa",
    use_cache=False,
    device_map={"": PartialState().process_index},
)

dataset = load_dataset("json", data_files="train.jsonl", split="train")

training_args = SFTConfig(
    output_dir="qwen3-8b-support-lora",
    model_init_kwargs=model_kwargs,
    max_length=1024,
    per_device_train_batch_size=2,
    gradient_accumulation_steps=8,
    gradient_checkpointing=True,
    learning_rate=1e-4,
    lr_scheduler_type="cosine",
    warmup_steps=10,
    num_train_epochs=1,
    bf16=True,
    logging_steps=5,
    save_strategy="epoch",
    report_to="none",
)
peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")

trainer = SFTTrainer(model=model_id, args=training_args, train_dataset=dataset, peft_config=peft_config)
trainer.train()
trainer.save_model()
