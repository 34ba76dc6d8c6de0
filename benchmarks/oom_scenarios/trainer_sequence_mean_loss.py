import torch
import torch.nn.functional as F
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

model_id = "Qwen/Qwen2.5-7B"


class SequenceMeanTrainer(Trainer):
    """Average the token loss within each sequence first, so long and short samples weigh the same."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits[:, :-1, :].float()
        targets = labels[:, 1:]
        token_loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100,
                                     reduction="none").view(targets.shape)
        mask = (targets != -100).float()
        loss = ((token_loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
        return (loss, outputs) if return_outputs else loss


tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch.bfloat16, device_map={"": 0})
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))

ds = load_dataset("json", data_files="train.jsonl", split="train")
ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=2048), batched=True, remove_columns=["text"])

args = TrainingArguments(
    output_dir="qwen2.5-7b-seqmean-lora",
    per_device_train_batch_size=8,
    gradient_accumulation_steps=2,
    gradient_checkpointing=True,
    learning_rate=1e-4,
    num_train_epochs=1,
    bf16=True,
    logging_steps=5,
    save_strategy="no",
    report_to="none",
)
trainer = SequenceMeanTrainer(model=model, args=args, train_dataset=ds,
                              data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
trainer.train()
trainer.save_model()
