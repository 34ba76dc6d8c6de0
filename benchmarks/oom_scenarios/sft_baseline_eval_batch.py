import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

model_id = "meta-llama/Llama-3.1-8B"
batch_size = 32
micro_batch_size = 2

tokenizer = AutoTokenizer.from_pretrained(model_id)
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token

model = AutoModelForCausalLM.from_pretrained(
    model_id,
    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True),
    dtype=torch.bfloat16,
    device_map={"": 0},
)

dataset = load_dataset("json", data_files="train.jsonl", split="train").train_test_split(test_size=0.1, seed=0)

config = SFTConfig(
    output_dir="llama-3.1-8b-qlora-sft",
    per_device_train_batch_size=micro_batch_size,
    gradient_accumulation_steps=batch_size // micro_batch_size,
    per_device_eval_batch_size=batch_size,
    max_length=1024,
    learning_rate=2e-4,
    num_train_epochs=1,
    lr_scheduler_type="cosine",
    warmup_steps=5,
    bf16=True,
    gradient_checkpointing=True,
    optim="paged_adamw_8bit",
    eval_strategy="steps",
    eval_steps=20,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=config, train_dataset=dataset["train"], eval_dataset=dataset["test"],
                     processing_class=tokenizer, peft_config=peft_config)

print("baseline:", trainer.evaluate())
trainer.train()
print("final:", trainer.evaluate())
trainer.save_model()
