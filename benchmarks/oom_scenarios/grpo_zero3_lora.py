import torch
from datasets import load_dataset
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer

# accelerate launch --config_file zero3.yaml grpo_zero3_lora.py   (DeepSpeed ZeRO-3 on 2 GPUs)
dataset = load_dataset("json", data_files="prefs.jsonl", split="train").select_columns(["prompt"])


def reward_len(completions, **kwargs):
    return [-abs(100 - len(c)) / 100 for c in completions]


config = GRPOConfig(
    output_dir="qwen-grpo-lora",
    per_device_train_batch_size=4,
    num_generations=4,
    max_completion_length=64,
    gradient_accumulation_steps=2,
    learning_rate=1e-5,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=1,
    report_to="none",
    model_init_kwargs={"dtype": torch.bfloat16},
)
trainer = GRPOTrainer(model="Qwen/Qwen2.5-7B", reward_funcs=reward_len, args=config, train_dataset=dataset,
                      peft_config=LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
trainer.train()
