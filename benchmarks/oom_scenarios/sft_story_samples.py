import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

model_id = "Qwen/Qwen3-4B"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})

dataset = load_dataset("json", data_files="train.jsonl", split="train").train_test_split(test_size=64, seed=0)
# the opening of each held-out story: watch how the continuations change while training
openings = [" ".join(text.split()[:60]) for text in dataset["test"]["text"]]


class SampleCallback(TrainerCallback):
    def __init__(self, tokenizer, prompts, every=10, samples_per_prompt=4, max_new_tokens=512):
        self.tokenizer, self.prompts, self.every = tokenizer, prompts, every
        self.samples_per_prompt, self.max_new_tokens = samples_per_prompt, max_new_tokens

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        self.tokenizer.padding_side = "left"
        batch = self.tokenizer(self.prompts, padding=True, return_tensors="pt").to(model.device)
        self.tokenizer.padding_side = "right"
        model.eval()
        with torch.no_grad():
            out = model.generate(
                **batch,
                do_sample=True,
                temperature=0.8,
                top_p=0.95,
                num_return_sequences=self.samples_per_prompt,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        model.train()
        texts = self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for prompt, text in zip(self.prompts[:3], texts[:: self.samples_per_prompt]):
            print(f"[step {state.global_step}] ...{prompt[-60:]} -> {text[:160]}", flush=True)


peft_config = LoraConfig(
    r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    target_modules="all-linear",
    task_type="CAUSAL_LM",
)

config = SFTConfig(
    output_dir="qwen3-4b-stories",
    max_length=1024,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=2,
    gradient_checkpointing=True,
    learning_rate=2e-4,
    lr_scheduler_type="cosine",
    warmup_steps=5,
    num_train_epochs=1,
    bf16=True,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)

trainer = SFTTrainer(
    model=model,
    args=config,
    train_dataset=dataset["train"],
    processing_class=tokenizer,
    peft_config=peft_config,
    callbacks=[SampleCallback(tokenizer, openings)],
)
trainer.train()
trainer.save_model()
