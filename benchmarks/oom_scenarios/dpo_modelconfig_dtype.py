from datasets import load_dataset
from trl import DPOConfig, DPOTrainer, ModelConfig, get_peft_config, get_quantization_config

model_args = ModelConfig(
    model_name_or_path="Qwen/Qwen3-8B",
    attn_implementation="sdpa",
    use_peft=True,
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
)
training_args = DPOConfig(
    output_dir="qwen3-8b-dpo-lora",
    per_device_train_batch_size=2,
    gradient_accumulation_steps=8,
    learning_rate=5e-6,
    beta=0.1,
    max_length=1024,
    bf16=True,
    gradient_checkpointing=True,
    num_train_epochs=1,
    logging_steps=10,
    save_strategy="epoch",
    report_to="none",
)
training_args.model_init_kwargs = dict(
    revision=model_args.model_revision,
    attn_implementation=model_args.attn_implementation,
    dtype=model_args.dtype,
)

dataset = load_dataset("json", data_files="prefs.jsonl", split="train")
trainer = DPOTrainer(
    model=model_args.model_name_or_path,
    args=training_args,
    train_dataset=dataset,
    quantization_config=get_quantization_config(model_args),
    peft_config=get_peft_config(model_args),
)
trainer.train()
trainer.save_model(training_args.output_dir)
