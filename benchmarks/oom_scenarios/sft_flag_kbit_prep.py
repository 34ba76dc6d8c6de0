from dataclasses import dataclass

import torch
from datasets import load_dataset
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, HfArgumentParser
from trl import SFTConfig, SFTTrainer


@dataclass
class ScriptArguments:
    model_name_or_path: str = "Qwen/Qwen3-8B"
    dataset_path: str = "chat.jsonl"
    output_dir: str = "qwen3-8b-support-sft"
    load_in_4bit: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    max_length: int = 2048
    batch_size: int = 2
    grad_accum: int = 8
    learning_rate: float = 2e-4


(args,) = HfArgumentParser(ScriptArguments).parse_args_into_dataclasses()

bnb_config = None
if args.load_in_4bit:
    bnb_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.bfloat16)

tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
tokenizer.chat_template = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, quantization_config=bnb_config,
                                             dtype=torch.bfloat16, device_map={"": 0}, attn_implementation="sdpa")
model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)

dataset = load_dataset("json", data_files=args.dataset_path, split="train")

peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.05,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                         task_type="CAUSAL_LM")
training_args = SFTConfig(
    output_dir=args.output_dir,
    max_length=args.max_length,
    per_device_train_batch_size=args.batch_size,
    gradient_accumulation_steps=args.grad_accum,
    learning_rate=args.learning_rate,
    lr_scheduler_type="cosine",
    warmup_steps=10,
    num_train_epochs=1,
    bf16=True,
    gradient_checkpointing=True,
    logging_steps=5,
    save_strategy="epoch",
    report_to="none",
)
trainer = SFTTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                     peft_config=peft_config)
trainer.train()
trainer.save_model(args.output_dir)
