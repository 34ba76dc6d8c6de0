from datasets import load_dataset
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer

dataset = load_dataset("json", data_files="train.jsonl", split="train")
dataset = dataset.map(lambda x: {"prompt": f"Summarize the following text in two sentences.\n\n{x['text']}\n\nSummary:"},
                      remove_columns=["text"])


def brevity_reward(completions, **kwargs):
    return [1.0 if 80 <= len(c) <= 300 else -0.5 for c in completions]


def no_repeat_reward(completions, **kwargs):
    rewards = []
    for c in completions:
        words = c.split()
        rewards.append(len(set(words)) / max(len(words), 1))
    return rewards


config = GRPOConfig(
    output_dir="qwen3-4b-grpo-summaries",
    model_init_kwargs={"dtype": "bfloat16"},
    per_device_train_batch_size=16,
    gradient_accumulation_steps=4,
    num_generations=16,
    max_completion_length=256,
    use_vllm=False,
    learning_rate=1e-5,
    beta=0.0,
    temperature=0.9,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=1,
    save_steps=100,
    report_to="none",
)
trainer = GRPOTrainer(
    model="Qwen/Qwen3-4B",
    reward_funcs=[brevity_reward, no_repeat_reward],
    args=config,
    train_dataset=dataset,
    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
)
trainer.train()
