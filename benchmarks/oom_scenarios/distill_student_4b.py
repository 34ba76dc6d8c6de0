import torch
import torch.nn.functional as F
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

student_id = "Qwen/Qwen3-4B"
teacher_id = "Qwen/Qwen3-8B"


class DistillationTrainer(Trainer):
    def __init__(self, *args, teacher_model=None, temperature=2.0, alpha=0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher_model
        self.temperature = temperature
        self.alpha = alpha

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        t = self.temperature
        kd = F.kl_div(F.log_softmax(outputs.logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1),
                      reduction="batchmean") * t * t / inputs["input_ids"].shape[1]
        loss = self.alpha * kd + (1 - self.alpha) * outputs.loss
        return (loss, outputs) if return_outputs else loss


tokenizer = AutoTokenizer.from_pretrained(student_id)
student = AutoModelForCausalLM.from_pretrained(student_id, dtype=torch.bfloat16)
student = get_peft_model(student, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
student.print_trainable_parameters()

teacher = AutoModelForCausalLM.from_pretrained(teacher_id, dtype=torch.bfloat16, device_map="cuda")
teacher.eval()
teacher.requires_grad_(False)

dataset = load_dataset("json", data_files="train.jsonl", split="train")
dataset = dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=512), batched=True,
                      remove_columns=["text"])

args = TrainingArguments(
    output_dir="qwen3-4b-distilled-lora",
    per_device_train_batch_size=2,
    gradient_accumulation_steps=8,
    gradient_checkpointing=True,
    learning_rate=1e-4,
    num_train_epochs=1,
    bf16=True,
    logging_steps=5,
    save_strategy="no",
    remove_unused_columns=False,
    report_to="none",
)
trainer = DistillationTrainer(
    model=student,
    args=args,
    train_dataset=dataset,
    data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    teacher_model=teacher,
)
trainer.train()
trainer.save_model()
