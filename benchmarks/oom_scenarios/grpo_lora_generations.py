import re

from datasets import load_dataset
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer

dataset = load_dataset("json", data_files="prefs.jsonl", split="train").select_columns(["prompt"])


def format_reward(completions, **kwargs):
    return [1.0 if re.search(r"w\d+ w\d+", c) else 0.0 for c in completions]


def length_reward(completions, **kwargs):
    return [-abs(300 - len(c)) / 300 for c in completions]


config = GRPOConfig(
    output_dir="qwen3-4b-grpo-lora",
    per_device_train_batch_size=4,
    gradient_accumulation_steps=8,
    num_generations=16,
    generation_batch_size=256,
    max_completion_length=512,
    use_vllm=False,
    learning_rate=1e-5,
    beta=0.0,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=1,
    save_steps=50,
    report_to="none",
)
trainer = GRPOTrainer(
    model="Qwen/Qwen3-4B",
    reward_funcs=[format_reward, length_reward],
    args=config,
    train_dataset=dataset,
    peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
)
trainer.train()
