import re

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})

dataset = load_dataset("json", data_files="prefs.jsonl", split="train").select_columns(["prompt"])


def repetition_reward(completions, **kwargs):
    rewards = []
    for c in completions:
        words = c.split()
        rewards.append(len(set(words)) / max(len(words), 1))
    return rewards


def length_reward(completions, **kwargs):
    return [-abs(800 - len(c)) / 800 for c in completions]


def format_reward(completions, **kwargs):
    return [0.5 if re.match(r"^\s*w\d+", c) else 0.0 for c in completions]


config = GRPOConfig(
    output_dir="qwen3-4b-grpo-lora",
    per_device_train_batch_size=16,
    gradient_accumulation_steps=4,
    num_generations=8,
    max_completion_length=256,
    use_vllm=False,
    temperature=1.0,
    learning_rate=1e-5,
    beta=0.0,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=1,
    save_steps=100,
    report_to="none",
)
trainer = GRPOTrainer(
    model=model,
    processing_class=tokenizer,
    reward_funcs=[repetition_reward, length_reward, format_reward],
    args=config,
    train_dataset=dataset,
    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
)
trainer.train()
trainer.save_model()
