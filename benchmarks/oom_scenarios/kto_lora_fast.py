import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import KTOConfig, KTOTrainer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})

pairs = load_dataset("json", data_files="prefs.jsonl", split="train")


def unpair(batch):
    out = {"prompt": [], "completion": [], "label": []}
    for p, c, r in zip(batch["prompt"], batch["chosen"], batch["rejected"]):
        out["prompt"] += [p, p]
        out["completion"] += [c, r]
        out["label"] += [True, False]
    return out


dataset = pairs.map(unpair, batched=True, remove_columns=pairs.column_names)

args = KTOConfig(
    output_dir="qwen3-4b-kto",
    per_device_train_batch_size=8,
    gradient_accumulation_steps=2,
    gradient_checkpointing=False,
    learning_rate=5e-6,
    beta=0.1,
    max_length=1024,
    num_train_epochs=1,
    bf16=True,
    logging_steps=10,
    save_strategy="no",
    report_to="none",
)

trainer = KTOTrainer(
    model=model,
    args=args,
    train_dataset=dataset,
    processing_class=tokenizer,
    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                           task_type="CAUSAL_LM"),
)
trainer.train()
