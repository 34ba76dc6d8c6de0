import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})

dataset = load_dataset("json", data_files="reports.jsonl", split="train")
dataset = dataset.map(
    lambda x: {"prompt": f"Summarize the following incident report in one short paragraph.\n\n{x['document']}\n\nSummary:"},
    remove_columns=["document"],
)


def coverage_reward(prompts, completions, **kwargs):
    rewards = []
    for prompt, completion in zip(prompts, completions):
        source = set(prompt.split())
        words = completion.split()
        rewards.append(sum(w in source for w in words) / max(len(words), 1))
    return rewards


def brevity_reward(completions, **kwargs):
    return [1.0 if 20 <= len(c.split()) <= 60 else -0.5 for c in completions]


config = GRPOConfig(
    output_dir="qwen3-4b-grpo-summaries",
    per_device_train_batch_size=16,
    gradient_accumulation_steps=1,
    num_generations=4,
    max_completion_length=256,
    use_vllm=False,
    temperature=0.9,
    learning_rate=5e-6,
    beta=0.04,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=1,
    save_steps=50,
    report_to="none",
)

trainer = GRPOTrainer(
    model=model,
    reward_funcs=[coverage_reward, brevity_reward],
    args=config,
    train_dataset=dataset,
    processing_class=tokenizer,
    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
)
trainer.train()
trainer.save_model()
