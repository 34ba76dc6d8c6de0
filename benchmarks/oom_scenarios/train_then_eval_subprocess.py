import json
import subprocess
import sys

import torch
from datasets import load_dataset
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen3-4B"
output_dir = "qwen3-4b-notes-lora"


def evaluate(adapter_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
    base = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    with open("prefs.jsonl") as f:
        prompts = [json.loads(line)["prompt"] for line in f][:16]
    results = []
    for i in range(0, len(prompts), 8):
        enc = tokenizer(prompts[i:i + 8], return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=128, do_sample=False)
        results += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    with open(f"{adapter_dir}/samples.json", "w") as f:
        json.dump([{"prompt": p, "completion": c} for p, c in zip(prompts, results)], f, indent=2)
    print(f"wrote {len(results)} samples to {adapter_dir}/samples.json")


def train():
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.print_trainable_parameters()

    dataset = load_dataset("json", data_files="train.jsonl", split="train")
    dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=1024), batched=True,
                          remove_columns=["text"])

    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        learning_rate=2e-4,
        max_steps=10,
        warmup_steps=1,
        bf16=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    trainer.train()
    trainer.save_model(output_dir)
    return trainer


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--eval":
        evaluate(sys.argv[2])
    else:
        trainer = train()
        subprocess.run([sys.executable, __file__, "--eval", output_dir], check=True)
