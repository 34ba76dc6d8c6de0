from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config, get_quantization_config

model_args = ModelConfig(
    model_name_or_path="Qwen/Qwen3-8B",
    dtype="bfloat16",
    use_peft=True,
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    bnb_4bit_quant_type="nf4",
    use_bnb_nested_quant=True,
)

tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
model = AutoModelForCausalLM.from_pretrained(
    model_args.model_name_or_path,
    dtype=model_args.dtype,
    attn_implementation=model_args.attn_implementation,
    quantization_config=get_quantization_config(model_args),
    device_map={"": 0},
)

training_args = SFTConfig(
    output_dir="qwen3-8b-qlora-sft",
    per_device_train_batch_size=1,
    gradient_accumulation_steps=16,
    learning_rate=2e-4,
    num_train_epochs=1,
    max_length=1024,
    bf16=True,
    gradient_checkpointing=True,
    optim="paged_adamw_8bit",
    logging_steps=10,
    save_strategy="epoch",
    report_to="none",
)

dataset = load_dataset("json", data_files="train.jsonl", split="train")

trainer = SFTTrainer(
    model=model,
    args=training_args,
    train_dataset=dataset,
    processing_class=tokenizer,
    peft_config=get_peft_config(model_args),
)
trainer.train()
trainer.save_model(training_args.output_dir)
