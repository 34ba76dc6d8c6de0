from datasets import load_dataset
from trl import GRPOConfig, GRPOTrainer

dataset = load_dataset("json", data_files="prefs.jsonl", split="train").select_columns(["prompt"])


def reward_len(completions, **kwargs):
    return [-abs(100 - len(c)) / 100 for c in completions]


config = GRPOConfig(
    output_dir="qwen-grpo",
    per_device_train_batch_size=4,
    num_generations=4,
    max_completion_length=64,
    gradient_accumulation_steps=2,
    learning_rate=1e-6,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=1,
    report_to="none",
)
trainer = GRPOTrainer(model="Qwen/Qwen2.5-3B", reward_funcs=reward_len, args=config, train_dataset=dataset)
trainer.train()
