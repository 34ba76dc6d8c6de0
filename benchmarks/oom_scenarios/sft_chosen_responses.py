import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

# stage 1 of the pipeline: supervised fine-tuning on the preferred answers, before DPO on the same pairs
model_id = "Qwen/Qwen3-4B"
max_prompt_length = 256

tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))

pairs = load_dataset("json", data_files="prefs_long.jsonl", split="train")


def build(example):
    # prompts can carry long pasted context: keep their last max_prompt_length tokens; the loss is on the answer only
    tokenizer.truncation_side = "left"
    prompt_ids = tokenizer(example["prompt"] + "\n\n", truncation=True, max_length=max_prompt_length)["input_ids"]
    tokenizer.truncation_side = "right"
    answer_ids = tokenizer(example["chosen"] + tokenizer.eos_token)["input_ids"]
    return {
        "input_ids": prompt_ids + answer_ids,
        "attention_mask": [1] * (len(prompt_ids) + len(answer_ids)),
        "labels": [-100] * len(prompt_ids) + answer_ids,
    }


train = pairs.map(build, remove_columns=pairs.column_names)

args = TrainingArguments(
    output_dir="qwen3-4b-sft-chosen",
    per_device_train_batch_size=2,
    gradient_accumulation_steps=8,
    learning_rate=1e-4,
    lr_scheduler_type="cosine",
    warmup_steps=5,
    num_train_epochs=3,
    bf16=True,
    logging_steps=1,
    save_strategy="epoch",
    report_to="none",
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=train,
    data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
)
trainer.train()
model.save_pretrained("qwen3-4b-sft-chosen")
