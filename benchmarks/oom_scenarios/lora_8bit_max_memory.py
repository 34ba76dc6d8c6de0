import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, DataCollatorForLanguageModeling,
                          Trainer, TrainingArguments)

model_id = "meta-llama/Llama-3.1-8B"

tokenizer = AutoTokenizer.from_pretrained(model_id)
tokenizer.pad_token = tokenizer.eos_token

model = AutoModelForCausalLM.from_pretrained(
    model_id,
    quantization_config=BitsAndBytesConfig(load_in_8bit=True),
    dtype=torch.bfloat16,
    device_map="auto",
    max_memory={0: "8GiB", "cpu": "48GiB"},
)
model.config.use_cache = False
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                         target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
model.print_trainable_parameters()

data = load_dataset("json", data_files="train.jsonl", split="train")
data = data.map(lambda x: tokenizer(x["text"], truncation=True, max_length=1024), remove_columns=["text"])

trainer = Trainer(
    model=model,
    train_dataset=data,
    args=TrainingArguments(
        output_dir="llama-8bit-lora",
        per_device_train_batch_size=1,
        gradient_accumulation_steps=16,
        gradient_checkpointing=True,
        learning_rate=3e-4,
        num_train_epochs=1,
        bf16=True,
        logging_steps=10,
        report_to="none",
    ),
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
)
trainer.train()
model.save_pretrained("llama-8bit-lora")
