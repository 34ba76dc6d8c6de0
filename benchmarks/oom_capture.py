"""Real out-of-memory failures on today's stack, caused on purpose, for the doctor to be checked against (issue 15).

    python benchmarks/oom_capture.py --out DIR [--only NAME,...]      # on the GPU machine (device tool), not in tests

Each script in benchmarks/oom_scenarios/ is a training or inference script as a user writes it (transformers
Trainer + PEFT, TRL SFTTrainer, bitsandbytes, generate), with one known mistake that runs a card of a known size out of
memory. This runs each one as `python NAME.py` in a folder holding random-weight models at real shapes
('Qwen/Qwen2.5-3B', 'Qwen/Qwen2.5-7B' are local folders there, so from_pretrained reads them offline and the script
text stays what a user writes), a word-level tokenizer, and the data files the scripts read. The card is emulated the
way the brief asks: a sitecustomize caps PyTorch's allocator at the card's size minus the CUDA context this process
measured, so N GiB means N GiB in all. The console output (stdout and stderr, as a user would paste it) and the run's facts
(return code, seconds, cap, context) are written to DIR/capture.json, with the provenance.

The cause of each failure is known by construction (SCENARIOS), so the captures are labelled without reading them;
benchmarks/oom_fixtures.py turns them into tests/fixtures/oom_captured/.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]

SCENARIOS = {
    # name: (card GiB, the card it stands for, the cause by construction, what was done wrong)
    "full_ft_trainer": (24, "rtx4090", "ddp_replica", "a full fine-tune of a 3B model (Trainer, AdamW) on a 24 GiB card"),
    "full_ft_sft": (24, "rtx4090", "ddp_replica", "a full fine-tune of a 3B model (TRL SFTTrainer, no peft_config) on a 24 GiB card"),
    "lora_batch_trainer": (16, "v100-16gb", "batch_or_seq", "LoRA with a micro-batch of 16 x 1024 tokens, no checkpointing"),
    "load_7b_chat": (12, "rtx3060", "load_too_big", "a 7B model's 16-bit weights (15 GB) loaded onto a 12 GiB card"),
    "eval_metrics_trainer": (24, "rtx4090", "eval_logits", "compute_metrics with no preprocess_logits_for_metrics: "
                             "every eval batch's full-vocabulary logits kept on the GPU"),
    "generate_batch": (16, "v100-16gb", "generation_batch", "generate() on 64 prompts x 8 return sequences x 1024 new "
                       "tokens at once"),
    "fp32_lora": (16, "v100-16gb", "fp32_training", "a LoRA on weights loaded in float32, no bf16/fp16 flag"),
    "long_sample_sft": (16, "v100-16gb", "long_sample", "max_length=None with one document of about 59,000 tokens among short ones"),
    "kbit_prep_bf16": (16, "v100-16gb", "kbit_prep_fp32", "prepare_model_for_kbit_training on a 16-bit model (no "
                       "quantization): it casts the weights to fp32"),
    "qlora_batch": (12, "rtx3060", "batch_or_seq", "QLoRA of a 7B with a micro-batch of 16 x 1024 tokens, no "
                    "checkpointing, on a 12 GiB card"),
    # built as qlora_batch on 8 GiB, it failed before the batch (capture-s13.json): prepare_model_for_kbit_training
    # casts the embeddings and the head (not quantized) to fp32, 2.03 GiB each for a 152k x 3584 matrix; the traceback
    # shows it, so that is its label
    "qlora_prep_8gb": (8, "rtx4060ti", "kbit_prep_fp32", "QLoRA of a 7B on an 8 GiB card: prepare_model_for_kbit_training "
                       "casts the unquantized embeddings and head to fp32"),
    "eval_batch_trainer": (24, "rtx4090", "eval_batch", "per_device_eval_batch_size=64 at 1024 tokens: the eval forward's "
                           "full-vocabulary logits"),
    "lora_beside_notebook": (24, "rtx4090", "other_process", "a LoRA that fits the card alone, started while another "
                             "process (a notebook kernel) holds 16 GiB of it"),
    "eager_long": (24, "rtx4090", "eager_attention", "eager attention at 16,384 tokens: the scores matrix per layer"),
    "dispatch_4bit": (8, "rtx4060ti", "bnb_cpu_dispatch", "a 4-bit load with device_map='auto' and max_memory too small "
                      "for the GPU: accelerate dispatches layers to the CPU"),
    # the second batch (capture-s13c.json), written and labelled before the doctor was run on it, after the rules were
    # changed from the first: the out-of-sample check of those changes
    "dpo_full": (24, "rtx4090", "ddp_replica", "a full DPO of a 4B model (TRL DPOTrainer, no peft_config): policy, "
                 "reference copy, gradients and AdamW state on a 24 GiB card"),
    "sft_big_batch": (24, "rtx4090", "batch_or_seq", "a LoRA SFT at a micro-batch of 32 x 2048 tokens"),
    "beam_generate": (16, "v100-16gb", "generation_batch", "generate() with 8 beams x 16 prompts x 2048 new tokens"),
    "sft_fp32_string": (24, "rtx4090", "fp32_training", "a LoRA SFT whose model_init_kwargs load the weights in "
                        "float32, no bf16 flag"),
    "load_8b_16gb": (16, "rtx4080", "load_too_big", "an 8B model's 16-bit weights (16.4 GB) loaded onto a 16 GiB card"),
    "eager_8k": (24, "rtx4090", "eager_attention", "eager attention at 2 x 8192 tokens"),
    "no_truncation_trainer": (16, "v100-16gb", "long_sample", "a tokenizer call without truncation, one document of "
                              "about 59,000 tokens among short ones"),
    # the third batch (capture-s13d), written and labelled before the doctor was run on it, after every rule change of
    # the session: the out-of-sample check of the final rules
    "grpo_full": (24, "rtx4090", "ddp_replica", "a full GRPO of a 3B model (TRL GRPOTrainer given the model by name, no "
                  "peft_config): float32 weights and gradients on a 24 GiB card"),
    "lora_no_ckpt_4k": (24, "rtx4090", "batch_or_seq", "LoRA at a micro-batch of 4 x 4096 tokens, no checkpointing"),
    "eval_accum_sft": (24, "rtx4090", "eval_logits", "SFTTrainer with compute_metrics and no "
                       "preprocess_logits_for_metrics: every eval batch's logits kept"),
    "qlora_eval_batch": (12, "rtx3060", "eval_batch", "QLoRA with per_device_eval_batch_size=32 at 1024 tokens"),
    # the fourth batch (capture-s14), several GPUs (the nvidia-h200-x2 machine, each card emulated): written and
    # labelled before the doctor was run on it
    "ddp_full_ft": (24, "rtx4090", "ddp_replica", "a full fine-tune of a 3B model under torchrun on two 24 GiB cards: "
                    "DDP keeps the weights, gradients and AdamW state whole on each"),
    "ddp_lora_7b": (16, "rtx4080", "ddp_replica", "a LoRA of a 7B's 16-bit weights under torchrun on two 16 GiB cards, "
                    "expecting the two to share the model: DDP puts the whole 15 GB model on each"),
    "fsdp_full_7b": (24, "rtx4090", "ddp_replica", "a full fine-tune of a 7B under accelerate FSDP2 (full shard) on two "
                     "24 GiB cards: each card's half of the weights, gradients and AdamW state is about 30 GB"),
    "ddp_lora_batch": (24, "rtx4090", "batch_or_seq", "a LoRA of a 3B under torchrun on two 24 GiB cards at a "
                       "micro-batch of 16 x 1024 tokens, no checkpointing"),
    "dataparallel_lora": (24, "rtx4090", "ddp_replica", "a LoRA of a 7B's 16-bit weights started with plain python on "
                          "a machine with two 24 GiB cards: the Trainer wraps it in DataParallel, a whole copy per card "
                          "and every output gathered onto the first"),
    # the fifth batch (capture-s14b), two GPUs again: written and labelled before the doctor was run on it, after the
    # rules were changed from capture-s14
    "ddp_eval_metrics": (24, "rtx4090", "eval_logits", "compute_metrics with no preprocess_logits_for_metrics under "
                         "torchrun on two 24 GiB cards: every eval batch's full-vocabulary logits kept and gathered"),
    "fsdp_lora_batch": (24, "rtx4090", "batch_or_seq", "a LoRA of a 3B under accelerate FSDP2 on two 24 GiB cards at a "
                        "micro-batch of 16 x 1024 tokens, no checkpointing"),
    "ddp_long_sample": (16, "v100-16gb", "long_sample", "TRL SFT under torchrun on two 16 GiB cards with max_length=None "
                        "and one document of about 59,000 tokens among short ones"),
    "ddp_beside_notebook": (24, "rtx4090", "other_process", "a LoRA of a 3B under torchrun on two 24 GiB cards that fits "
                            "them, while another process (a notebook kernel) holds 16 GiB of the second"),
    # the sixth batch (capture-s14c), a mixture of experts (Qwen3-30B-A3B at its real shape): written and labelled
    # after every rule change of the session, before the doctor was run on it
    "qlora_moe_12gb": (12, "rtx3060", "load_too_big", "a QLoRA of a 30B mixture of experts on a 12 GiB card, counting "
                       "on its 3B active parameters: every expert is loaded, about 16 GB even in 4-bit"),
    "ddp_lora_moe": (48, "rtx-a6000", "ddp_replica", "a LoRA of a 30B mixture of experts' 16-bit weights (61 GB) under "
                     "torchrun on two 48 GiB cards: DDP puts the whole model on each"),
    # the seventh batch (capture-s15), DeepSpeed through the transformers Trainer on two GPUs: written and labelled
    # before the doctor was run on it
    "ds_zero2_full": (24, "rtx4090", "ddp_replica", "a full fine-tune of a 3B under DeepSpeed ZeRO-2 (deepspeed launcher) "
                      "on two 24 GiB cards: each keeps the 16-bit weights whole and half of the fp32 master weights, "
                      "Adam moments and gradients, about 28 GB"),
    "ds_zero3_lora_batch": (24, "rtx4090", "batch_or_seq", "a LoRA of a 7B under ZeRO-3 (torchrun, Trainer deepspeed=) on "
                            "two 24 GiB cards at a micro-batch of 16 x 1024 tokens, no checkpointing"),
    "ds_zero3_full_7b": (40, "a100-40gb", "ddp_replica", "a full fine-tune of a 7B under DeepSpeed ZeRO-3 on two 40 GiB "
                         "cards: even sharded, each card's half of the 16 bytes per parameter is about 61 GB"),
    # the eighth batch (capture-s15b), written and labelled after the rule changes of capture-s15, before the doctor
    # was run on it: the out-of-sample check of those changes
    "grpo_zero3_lora": (12, "rtx3060", "zero3_generation", "a GRPO LoRA of a 7B under accelerate's DeepSpeed ZeRO-3 on "
                        "two 12 GiB cards: the weights are sharded (7.6 GB each), but TRL gathers all 15 GB onto each "
                        "GPU to generate"),
    "ds_zero2_lora_7b": (16, "v100-16gb", "ddp_replica", "a LoRA of a 7B's 16-bit weights under ZeRO-2 (deepspeed "
                         "launcher) on two 16 GiB cards: ZeRO-2 shards no weights, so each card holds all 15 GB"),
    # the ninth batch (capture-s16), one GPU: a cause no capture had yet, written and labelled before the doctor was
    # run on it, after every rule change of session 16
    "logits_fp32_3b": (24, "rtx4090", "fp32_logits", "a LoRA of a 3B with gradient checkpointing at a micro-batch of "
                       "8 x 2048 tokens: the weights and the checkpointed activations take about 9 GB, the loss's "
                       "full-vocabulary logits (152k) in fp32 and their gradient about 20 GB more"),
    # the eighth batch (capture-s18), written blind (session 18): one GPU, twelve causes, written and labelled by a
    # writer who never read or ran the doctor; the arithmetic of each is in oom_scenarios/CAPTURE_S18.md
    "sft_chat_model_max": (24, "rtx4090", "long_sample", "TRL SFT of chat conversations (\"messages\") with "
                           "max_length=tokenizer.model_max_length, which is 1e30 (no cap): four conversations of about "
                           "58,000 tokens among 44 of about 1,200"),
    "lora_bnb_not_passed": (16, "v100-16gb", "no_quant", "a LoRA of a 7B whose BitsAndBytesConfig was written but never "
                            "passed to from_pretrained: 14.2 GiB of 16-bit weights on a 16 GiB card, where the 4-bit "
                            "load (5.2 GiB) fits"),
    "grpo_lora_generations": (24, "rtx4090", "generation_batch", "a GRPO LoRA of Qwen3-4B without vLLM with "
                              "generation_batch_size=256: one generate() of 256 completions (16 prompts x 16) of up to "
                              "512 tokens, a KV cache of 12 GiB after the prefill and 30 GiB at full length"),
    "eval_loop_keep_logits": (16, "v100-16gb", "eval_logits", "a hand-written evaluation loop that appends every "
                              "batch's full-vocabulary logits (4 x 1023 x 152k in bf16, 1.16 GiB) to a list on the GPU"),
    "eager_summarize": (16, "rtx4080", "eager_attention", "generate() on chapters of about 17,400 tokens with "
                        "attn_implementation='eager': the prefill's scores matrix, 32 heads x 17,400^2, per layer"),
    "train_then_merge": (12, "rtx3060", "save_merge", "merging the adapter at the end of the training script: a second "
                         "16-bit copy of the 3B base loaded onto the GPU for merge_and_unload beside the trained model "
                         "and its optimizer state"),
    "qlora_beside_server": (24, "rtx4090", "other_process", "a QLoRA SFT of Qwen3-8B that fits a 24 GiB card alone, "
                            "started while another process (an inference server) holds 16 GiB of it (12 GiB left it room: it trained, "
                            "capture-s18b)"),
    "accelerate_fp32_lora": (32, "rtx5090", "fp32_training", "a LoRA of a 7B in a hand-written accelerate loop on "
                             "weights loaded in float32 (28.4 GiB), counting on Accelerator(mixed_precision='bf16') "
                             "to halve them"),
    "dpo_lora_batch": (24, "rtx4090", "batch_or_seq", "a DPO LoRA of Qwen3-4B at per_device_train_batch_size=16 x "
                       "1024 tokens: 32 sequences (chosen and rejected) per forward"),
    "full_ft_llama_loop": (40, "a100-40gb", "ddp_replica", "a full fine-tune of Llama-3.1-8B in a plain PyTorch loop "
                           "(AdamW) on a 40 GiB card: 16-bit weights, gradients and AdamW state about 60 GiB"),
    "pipeline_llama_12gb": (12, "rtx3060", "load_too_big", "pipeline('text-generation') of Llama-3.1-8B in bf16 "
                            "(15 GiB of weights) on a 12 GiB card"),
    "manual_loss_fp32": (24, "rtx4090", "fp32_logits", "a LoRA of Qwen3-4B in a hand loop with checkpointing at 8 x "
                         "2048 tokens: weights and checkpoints take about 10.5 GiB, the loss's .float() copy of the "
                         "[8, 2047, 152k] logits 9.3 GiB and its log-softmax 9.3 GiB more"),
    # the ninth batch (capture-s18d), written blind (session 18): one GPU, seven causes in forms no earlier script
    # has, written and labelled by a writer who never read or ran the doctor; the arithmetic is in
    # oom_scenarios/CAPTURE_S18D.md
    "pad_max_length_trainer": (24, "rtx4090", "batch_or_seq", "a LoRA of a 3B (Trainer, checkpointing, batch 2) whose "
                               "tokenizer call pads every sample to max_length=8192 (padding='max_length'): 2 x 8,192 "
                               "tokens per step where the samples are at most 2,028"),
    "loss_accum_graph": (16, "v100-16gb", "batch_or_seq", "a hand loop that sums the loss over 16 micro-batches of 2 x "
                         "1024 and calls backward once: every micro-batch's graph (checkpoints, fp32 log-softmax) is "
                         "kept until then, as if the micro-batch were 16 times larger"),
    "embed_corpus_once": (24, "rtx4090", "batch_or_seq", "embedding a 400-document corpus with a 4B model (AutoModel, "
                          "last-token pooling) in one forward: 400 x 2,028 tokens at once"),
    "generate_with_scores": (16, "v100-16gb", "generation_batch", "generate() on 32 prompts x 1024 new tokens with "
                             "output_scores and output_logits: two fp32 [32, 152k] tensors kept per new token"),
    "sft_eval_default_batch": (24, "rtx4090", "eval_batch", "TRL SFT of a 3B at max_length=4096 with the train batch "
                               "lowered to 1 but per_device_eval_batch_size left at its default of 8: the eval forward "
                               "is 8 x 4,096 tokens"),
    "dpo_second_run": (24, "rtx4090", "other_process", "a DPO LoRA of a 3B that fits a 24 GiB card alone, started while "
                       "another process (the previous run) holds 16 GiB of it"),
    "fp32_master_fp16": (40, "a100-40gb", "fp32_training", "a LoRA of Qwen3-8B loaded with dtype=torch.float32 "
                         "(30.5 GiB) and trained with fp16=True, expecting fp16 mixed precision to keep the weights "
                         "in 16-bit"),
    "trainer_predict_test": (24, "rtx4090", "eval_logits", "trainer.predict() on a 100-sample test set to compute "
                             "next-token accuracy: every batch's 8 x 1024 x 152k logits kept (and concatenated) on the "
                             "GPU"),
    "attention_maps": (24, "rtx4090", "eager_attention", "a forward of a 17,265-token book with "
                       "attn_implementation='eager' and output_attentions=True to inspect attention maps: the scores "
                       "matrix of 16 heads x 17,265^2 per layer"),
    "sft_packing_16k": (24, "rtx4090", "batch_or_seq", "a QLoRA SFT of Qwen3-8B with packing=True and max_length=16384 "
                        "at batch 2: 32,768 tokens per micro-batch"),
    # the tenth batch (capture-s18f), written blind (session 18): one GPU, eight causes in forms no earlier script has,
    # written and labelled by a writer who never read or ran the doctor; the arithmetic is in
    # oom_scenarios/CAPTURE_S18F.md
    "sft_modelconfig_qlora": (16, "rtx4080", "no_quant", "a QLoRA recipe through TRL's ModelConfig (nf4, nested quant, "
                              "PEFT) without load_in_4bit=True: get_quantization_config returns None and Qwen3-8B's "
                              "16-bit weights (15.3 GiB) go onto a 16 GiB card, where the 4-bit QLoRA fits"),
    "finetune_loop_truncation": (16, "rtx4080", "long_sample", "a hand LoRA loop whose collator calls the tokenizer with "
                                 "truncation=True but no max_length (model_max_length is 1e30, no cap): the batch "
                                 "holding the one document of about 59,000 tokens is 4 x 59k tokens"),
    "eval_generations_beside_training": (24, "rtx4090", "other_process", "generate() with Qwen3-8B in bf16 (15.3 GiB), "
                                         "which fits a 24 GiB card alone, started while another process (a training "
                                         "run) holds 10 GiB of it"),
    "best_of_n_sampling": (24, "rtx4090", "generation_batch", "best-of-n sampling with Qwen3-4B: one generate() on 16 "
                           "prompts with num_return_sequences=64, 1,024 sequences of ~370 prompt tokens prefilled at "
                           "once"),
    "accelerate_accumulate_batch": (24, "rtx3090", "batch_or_seq", "a hand accelerate loop with "
                                    "gradient_accumulation_steps=8 whose DataLoader batch_size is the global batch "
                                    "(32): every micro-batch is 32 x 1024 tokens, not 4"),
    "full_ft_adam8bit": (40, "a100-40gb", "ddp_replica", "a full fine-tune of Qwen3-8B (Trainer) counting on "
                         "optim='adamw_bnb_8bit' to fit a 40 GiB card: bf16 weights and gradients 30.5 GiB, then the "
                         "8-bit AdamW states 15.3 GiB more"),
    "distill_kl_loss": (48, "rtx-a6000", "fp32_logits", "a hand knowledge-distillation loop (Qwen3-8B teacher, Qwen3-4B "
                        "LoRA student) at 8 x 1024 tokens whose KL loss upcasts both models' full-vocabulary logits to "
                        "fp32 (log_softmax, softmax, kl_div elementwise): about 8 fp32 [8192, 152k] tensors of 4.6 GiB"),
    "eval_on_start_trainer": (24, "rtx4090", "eval_batch", "a LoRA of Qwen3-4B (Trainer) with eval_on_start=True and "
                              "per_device_eval_batch_size=32 at 1024 tokens: the evaluation before the first step runs "
                              "32 x 1,024 tokens with the loss"),
    # the eleventh batch (capture-s19), written blind (session 19): one GPU, eight causes in forms no earlier script
    # has, written and labelled by a writer who never read or ran the doctor; the arithmetic is in
    # oom_scenarios/CAPTURE_S19.md
    "qlora_merge_bf16_base": (16, "rtx4080", "save_merge", "a TRL QLoRA SFT of Qwen2.5-7B that fits, then the merge in "
                              "the same script: the 16-bit base (14.2 GiB) loaded onto the GPU beside the 4-bit trained "
                              "model (about 5.9 GiB with its LoRA state) for merge_and_unload"),
    "chat_with_adapter": (12, "rtx3060", "no_quant", "chatting with a QLoRA adapter of Qwen3-8B through "
                          "AutoPeftModelForCausalLM.from_pretrained(adapter, dtype=bfloat16) without a "
                          "quantization_config: the base loads in 16-bit (15.3 GiB) where the 4-bit load (5.7 GiB) "
                          "fits"),
    "thinking_static_cache": (24, "rtx4090", "generation_batch", "generate() with Qwen3-4B on 16 prompts at "
                              "max_new_tokens=32768 (the model card's thinking budget) with "
                              "cache_implementation='static': a KV cache of 16 x 33k tokens (2 GiB per layer, 73 GiB) "
                              "allocated in the prefill"),
    "embed_inbatch_negatives": (24, "rtx4090", "batch_or_seq", "a contrastive (in-batch negatives) LoRA fine-tune of "
                                "Qwen3-4B as an embedding model in a hand loop at batch_size=128 query/passage pairs: "
                                "about 120k tokens with gradients per step"),
    "lora_context_window": (16, "rtx4080", "long_sample", "a Trainer LoRA of Qwen2.5-3B whose tokenizer call truncates "
                            "at max_length=model.config.max_position_embeddings (32,768): the batch holding the one "
                            "57,784-token document is 4 x 32,768 tokens, the others at most 4 x 460"),
    "sft_baseline_eval_batch": (24, "rtx4090", "eval_batch", "a TRL QLoRA SFT of Llama-3.1-8B with "
                                "per_device_eval_batch_size set to the effective batch (32) and a baseline "
                                "trainer.evaluate() before training: the eval forward is 32 x 1,024 tokens with the "
                                "loss"),
    "trainer_sequence_mean_loss": (40, "a100-40gb", "fp32_logits", "a Trainer subclass whose compute_loss upcasts the "
                                   "logits (.float()) for a per-sequence mean cross-entropy, LoRA of Qwen2.5-7B with "
                                   "checkpointing at 8 x ~2,000 tokens: fp32 copy and log-softmax of the [8, 2k, 152k] "
                                   "logits, 8.9 GiB each"),
    "accelerate_lora_shared_gpu": (24, "rtx4090", "other_process", "a hand accelerate LoRA of Qwen3-4B (batch 4 x "
                                   "1024, checkpointing) that fits a 24 GiB card alone, started while another process "
                                   "holds 14 GiB of it"),
    # the twelfth batch (capture-s19b), written blind (session 19): one GPU, eight causes in forms no earlier script
    # has, written and labelled by a writer who never read or ran the doctor; the arithmetic is in
    # oom_scenarios/CAPTURE_S19B.md
    "json_config_fp32": (24, "rtx4090", "fp32_training", "a Trainer LoRA of Qwen3-8B whose experiment config (JSON) "
                         "says \"torch_dtype\": \"float32\": 30.5 GiB of fp32 weights on a 24 GiB card, where bf16 "
                         "(15.3 GiB) fits"),
    "eval_softmax_probs": (24, "rtx4090", "eval_logits", "a Trainer LoRA of Qwen2.5-3B whose preprocess_logits_for_metrics "
                           "returns softmax(logits.float()) for a calibration metric: every eval batch's fp32 "
                           "full-vocabulary probabilities (8 x 1024 x 152k, 4.6 GiB) kept on the GPU"),
    "pipeline_batch_summaries": (16, "rtx4080", "generation_batch", "pipeline('text-generation') of Qwen3-4B on 256 "
                                 "documents of ~1,800 tokens with batch_size=64: a prefill of 64 x ~2,060 tokens"),
    "reward_model_lora": (24, "rtx4090", "other_process", "a TRL RewardTrainer LoRA of Qwen2.5-7B (bf16, sequence "
                          "classification) that fits a 24 GiB card alone, started while another process holds 12 GiB "
                          "of it"),
    "accumulate_loss_list": (24, "rtx4090", "batch_or_seq", "a hand LoRA loop of Qwen3-4B (micro-batch 4 x 1024, "
                             "checkpointing) that appends each micro-batch's loss to a list and calls "
                             "torch.stack(losses).mean().backward() every 8: eight micro-batches' graphs alive at once"),
    "dpo_no_max_length": (24, "rtx4090", "long_sample", "a TRL DPO LoRA of Qwen2.5-3B with max_length=None on "
                          "preference pairs of which five have a chosen answer of ~46,000 tokens"),
    "lora_resume_checkpoint": (12, "rtx3060", "resume_state", "a hand LoRA loop of Qwen3-4B resuming from its own "
                               "checkpoint (the PeftModel's whole state_dict, 7.5 GiB, saved from the GPU) with "
                               "torch.load and no map_location: a second copy of the weights lands on the GPU"),
    "dpo_eval_batch": (24, "rtx4090", "eval_batch", "a TRL DPO LoRA of Qwen3-4B (train batch 2) with "
                       "per_device_eval_batch_size=32: the eval forward is 64 sequences (chosen and rejected) of "
                       "~1,210 tokens"),
    # the thirteenth batch (capture-s19d), written blind (session 19): one GPU, seven causes in forms no earlier
    # script has, written and labelled by a writer who never read or ran the doctor; the arithmetic of each is in
    # oom_scenarios/CAPTURE_S19D.md
    "sft_eager_qlora": (48, "rtx-a6000", "eager_attention", "a TRL SFT QLoRA of Llama-3.1-8B loaded with "
                        "attn_implementation='eager' at max_length=12288 (books): the backward of each checkpointed "
                        "layer holds 32 heads x 12288^2 scores in fp32 and bf16, 45-54 GiB"),
    "merge_dequantize": (12, "rtx3060", "save_merge", "an adapter merge script that loads Qwen3-8B in 4-bit on the GPU and "
                         "calls base.dequantize() before PeftModel/merge_and_unload: 15.3 GiB of 16-bit weights"),
    "lora_8bit_max_memory": (12, "rtx3060", "bnb_cpu_dispatch", "an 8-bit LoRA of Llama-3.1-8B loaded with "
                             "device_map='auto' and max_memory={0: '8GiB'}: 8.5 GiB of 8-bit weights do not fit the "
                             "budget, layers go to the CPU and bitsandbytes refuses"),
    "eval_full_documents": (24, "rtx4090", "long_sample", "a Trainer LoRA of Qwen2.5-3B whose eval set (mixed.jsonl, "
                            "for whole-document perplexity) is tokenized without truncation: the eval batch holding "
                            "the 57,784-token document"),
    "sft_by_name_no_dtype": (24, "rtx4090", "fp32_training", "TRL SFTTrainer given the model id of Qwen2.5-7B with no "
                             "model_init_kwargs dtype: TRL 1.16 loads it in float32 (28.4 GiB), bf16=True or not"),
    "sft_quant_config_ignored": (12, "rtx3060", "no_quant", "a QLoRA SFT that loads Qwen2.5-7B itself in bf16 and "
                                 "passes quantization_config to SFTTrainer, which ignores it for an instantiated model: "
                                 "14.2 GiB of 16-bit weights on a 12 GiB card"),
    "generate_keep_outputs": (16, "rtx4080", "generation_batch", "batched summarization with Qwen3-4B that keeps every "
                              "generate() output (return_dict_in_generate=True, so each batch's KV cache, ~2.3 GiB) in "
                              "a list until the end"),
    "classifier_amp_float": (24, "rtx4090", "fp32_training", "a LoRA sequence classifier of Qwen2.5-7B in a hand "
                             "autocast loop that calls model.float() before moving it to the GPU: 26.3 GiB of fp32 "
                             "weights"),
    # the fourteenth batch (capture-s20), written blind (session 20): one GPU, eight causes in forms no earlier script
    # has, written and labelled by a writer who never read or ran the doctor; the arithmetic of each is in
    # oom_scenarios/CAPTURE_S20.md
    "embed_docs_no_truncation": (16, "rtx4080", "long_sample", "embedding mixed.jsonl with Qwen3-4B (AutoModel, "
                                 "last-token pooling) at batch 32 with padding=True and no truncation: the second "
                                 "batch holds the 57,784-token document, so it is 32 x 57,784 tokens"),
    "generate_hidden_states": (24, "rtx4090", "generation_batch", "generate() with Qwen3-4B on 24 documents of ~2,000 "
                               "tokens with output_hidden_states=True and return_dict_in_generate=True: the prefill "
                               "keeps all 37 layers' hidden states (24 x 2,100 x 2,560 each, 8.9 GiB) beside a 6.9 GiB "
                               "KV cache"),
    "sft_flag_kbit_prep": (24, "rtx4090", "kbit_prep_fp32", "a TRL SFT LoRA script whose load_in_4bit flag defaults to "
                           "False but which calls prepare_model_for_kbit_training anyway: Qwen3-8B's 16-bit weights "
                           "(15.3 GiB) cast to fp32 (30.5 GiB) on the GPU"),
    "merge_fp32_base": (24, "rtx4090", "save_merge", "an adapter merge script that loads the Qwen3-8B base in float32 on "
                        "the GPU to merge in full precision: 30.5 GiB of weights on a 24 GiB card, where the bf16 "
                        "merge (15.3 GiB) fits"),
    "grpo_shared_gpu": (24, "rtx4090", "other_process", "a TRL GRPO LoRA of Qwen3-4B (bf16, no vLLM, 16 completions of "
                        "256 tokens per step) that fits a 24 GiB card alone, started while another process holds 14 "
                        "GiB of it"),
    "best_of_n_reward_model": (16, "rtx4080", "load_too_big", "best-of-n sampling that loads the Qwen3-4B policy "
                               "(7.5 GiB) and a Qwen2.5-7B reward model (13.2 GiB) onto one 16 GiB card at once"),
    "lora_on_merged_checkpoint": (24, "rtx4090", "fp32_training", "a Trainer LoRA of a merged Qwen3-8B checkpoint "
                                  "loaded with dtype='auto' whose config.json says float32: 30.5 GiB of weights, "
                                  "where bf16 (15.3 GiB) fits"),
    "reward_model_batch": (16, "rtx4080", "batch_or_seq", "a TRL RewardTrainer LoRA of Qwen3-4B at "
                           "per_device_train_batch_size=32: 64 sequences (chosen and rejected) of ~1,230 tokens per "
                           "forward, 13.5 GiB of checkpoints beside 7.5 GiB of weights"),
    # the fifteenth batch (capture-s20b), written blind (session 20): one GPU, seven causes in forms no earlier script
    # has, written and labelled by a writer who never read or ran the doctor; the arithmetic is in
    # oom_scenarios/CAPTURE_S20B.md
    "merge_compare_copy": (24, "rtx4090", "save_merge", "a merge script that compares the adapter with the merged "
                           "model: copy.deepcopy(model).merge_and_unload() of a PeftModel on Qwen3-8B's 16-bit weights "
                           "puts a second 15.3 GiB copy on a 24 GiB card"),
    "notebook_pipeline_by_id": (24, "rtx4090", "load_too_big", "a notebook-style script that loads Qwen3-8B in bf16 "
                                "onto the card, then builds pipeline('text-generation', model=<the same id>): a second "
                                "15.3 GiB copy of the weights"),
    "orpo_lora_batch": (24, "rtx4090", "batch_or_seq", "an ORPO LoRA of Qwen3-4B (TRL's experimental ORPOTrainer, "
                        "full-vocabulary logits) at per_device_train_batch_size=16 x 1024 tokens: 32 sequences "
                        "(chosen and rejected) per forward, their bf16 logits alone 9.3 GiB"),
    "ticket_classifier_lora": (16, "rtx4080", "long_sample", "a sequence-classification LoRA of Qwen3-4B whose "
                               "tokenizer call has truncation=True but no max_length (the tokenizer's model_max_length "
                               "is no cap): four tickets with a pasted log of about 58,000 tokens among short ones"),
    "merge_checkpoint_adapter": (24, "rtx4090", "other_process", "a correct merge of a Qwen3-8B adapter (bf16 base, "
                                 "15.3 GiB) started while the training run (another process) still holds 14 GiB of "
                                 "the 24 GiB card"),
    "doc_qa_cache_sessions": (24, "rtx4090", "generation_batch", "question answering over a cached document prefix "
                              "(8,000 tokens) with Qwen3-8B: every question's deep-copied KV cache (1.1 GiB each) "
                              "kept in a sessions dict for follow-ups"),
    "kto_lora_fast": (24, "rtx4090", "batch_or_seq", "a KTO LoRA of Qwen3-4B (TRL KTOTrainer) with "
                      "gradient_checkpointing=False at a micro-batch of 8 x 1024 tokens: every layer's activations "
                      "kept"),
    "lora_tf32_float32": (24, "rtx4090", "fp32_training", "a LoRA of Llama-3.1-8B loaded with dtype=torch.float32 "
                          "and tf32=True (TF32 taken for a 16-bit mode): 29.9 GiB of fp32 weights on a 24 GiB card"),
    # the sixteenth batch (capture-s20c), written blind (session 20): one GPU, six causes in forms no earlier script
    # has, written and labelled by a writer who never read or ran the doctor; the arithmetic of each is in
    # oom_scenarios/CAPTURE_S20C.md
    "eval_no_grad_loop": (24, "rtx4090", "eval_batch", "a hand LoRA loop of Qwen3-4B whose baseline evaluation (eval "
                          "batch 4 x 1024, model.eval()) runs without torch.no_grad(): every layer's activations and the "
                          "loss's logits kept for a backward that never comes, with checkpointing off in eval mode"),
    "dpo_ref_model_copy": (24, "rtx4090", "load_too_big", "a TRL DPO LoRA of Qwen3-8B given an explicit ref_model: a "
                           "second bf16 copy (15.3 GiB) loaded onto the card beside the policy, where the LoRA policy "
                           "with its adapters disabled is the reference"),
    "map_pad_longest": (16, "rtx4080", "long_sample", "a Trainer LoRA of Qwen2.5-3B whose batched map calls the tokenizer "
                        "with padding=True and no truncation: every sample padded to the longest (57,784 tokens)"),
    "review_classifier_shared": (24, "rtx4090", "other_process", "a sequence-classification LoRA of Qwen2.5-3B (Trainer, "
                                 "batch 16 x <=480, checkpointing) that fits the card alone, started while another "
                                 "process holds 17 GiB of it"),
    "merge_upcast_save": (24, "rtx4090", "save_merge", "an adapter merge of Qwen3-8B (bf16 base on the GPU) that upcasts "
                          "the merged model with .to(torch.float32) before save_pretrained: 30.5 GiB of fp32 weights"),
    "self_consistency_generate": (24, "rtx4090", "generation_batch", "self-consistency sampling with Qwen3-4B: 16 prompts "
                                  "x num_return_sequences=32 in one generate(), 512 sequences of ~420 prompt tokens "
                                  "in the prefill (a KV cache of ~29 GiB)"),
    "adapter_sweep_reload": (24, "rtx4090", "load_too_big", "comparing two LoRA adapters of Qwen3-8B by reloading the "
                             "bf16 base in a loop without freeing the previous one: two 15.3 GiB copies at the second "
                             "load"),
    "chat_template_loop": (16, "rtx4080", "long_sample", "a hand LoRA loop of Qwen3-4B on chat conversations tokenized "
                           "by apply_chat_template with no truncation: the sixth conversation is 58,172 tokens"),
    # the seventeenth batch (capture-s21), written blind (session 21): one GPU, eight causes in forms no earlier
    # script has, written and labelled by a writer who never read or ran the doctor; the arithmetic of each is in
    # oom_scenarios/CAPTURE_S21.md
    "mc_eval_one_forward": (24, "rtx4090", "eval_batch", "a multiple-choice log-likelihood evaluation of Qwen3-8B (bf16) "
                            "that scores all 800 question/option sequences (200 questions x 4 options, ~425 tokens "
                            "each) in one padded forward: 340k tokens at once, a single MLP activation 8 GiB"),
    "chat_lm_head_cpu": (8, "rtx4060ti", "bnb_cpu_dispatch", "a 4-bit (nf4) chat load of Llama-3.1-8B with "
                         "device_map={'model': 0, 'lm_head': 'cpu'} to keep the 1 GiB head off an 8 GiB card: "
                         "bitsandbytes refuses a device map with modules on the CPU"),
    "rerank_beside_notebook": (16, "rtx4080", "other_process", "a Qwen3-4B (bf16, 7.5 GiB) yes/no reranker that fits a "
                               "16 GiB card alone, started while another process (a notebook kernel) holds 10 GiB of "
                               "it"),
    "grpo_summaries_long_prompts": (24, "rtx4090", "generation_batch", "a TRL GRPO LoRA of Qwen3-4B (bf16, no vLLM) "
                                    "on summarization prompts of ~2,000 tokens with per_device_train_batch_size=16 x "
                                    "gradient_accumulation_steps=4: steps_per_generation defaults to the accumulation, "
                                    "so one generate() prefills 64 sequences (4 prompts x 16 generations), a KV cache "
                                    "of ~18 GiB"),
    "dpo_modelconfig_dtype": (24, "rtx4090", "fp32_training", "a DPO LoRA of Qwen3-8B written like TRL's dpo.py: "
                              "model_init_kwargs take dtype=model_args.dtype from a ModelConfig that never sets it, "
                              "and ModelConfig's dtype defaults to 'float32': 30.5 GiB of weights, where bf16 "
                              "(15.3 GiB) fits"),
    "pipeline_quant_kwarg": (12, "rtx3060", "no_quant", "pipeline('text-generation') of Qwen3-8B given "
                             "quantization_config=BitsAndBytesConfig(4-bit) as a pipeline keyword instead of in "
                             "model_kwargs: it is not passed to from_pretrained, so 15.3 GiB of bf16 weights load onto "
                             "a 12 GiB card where the 4-bit load (5.7 GiB) fits"),
    "sft_chat_lora_forgotten": (24, "rtx4090", "ddp_replica", "a chat SFT of Qwen3-4B (TRL, bf16, assistant_only_loss) "
                                "whose LoraConfig is written but never passed to SFTTrainer: a full fine-tune, 7.5 GiB "
                                "of weights, 7.5 of gradients and 15 of AdamW state on a 24 GiB card"),
    "ticket_triage_generate": (24, "rtx4090", "long_sample", "zero-shot ticket routing with Qwen3-8B generate() in "
                               "batches of 4, tokenized with padding and no truncation: the third ticket batch holds a "
                               "pasted log of 57,858 tokens, so the batch is 4 x ~57,900 tokens (KV cache 32 GiB)"),
    # the eighteenth batch (capture-s21b), written blind (session 21): one GPU, eight causes in forms no earlier
    # script has, written and labelled by a writer who never read or ran the doctor; the arithmetic of each is in
    # oom_scenarios/CAPTURE_S21B.md
    "probe_layer_features": (24, "rtx4090", "eval_logits", "a layer-wise linear-probe feature extraction with Qwen3-4B "
                             "(bf16, no_grad) that keeps every batch's output_hidden_states, all 37 layers stacked "
                             "(8 x 1024 x 2560 each, 1.45 GiB a batch), on the GPU until the end: 20 batches would be "
                             "29 GiB beside 7.5 GiB of weights"),
    "train_then_eval_subprocess": (16, "rtx4080", "other_process", "a Trainer LoRA of Qwen3-4B that, when training "
                                   "ends, starts its generation eval as a fresh python process (subprocess.run of "
                                   "itself) while the training process, still alive, holds the model and its cached "
                                   "memory (8-13 GiB): the child's 7.5 GiB bf16 load does not fit beside it"),
    "entropy_bonus_loop": (40, "a100-40gb", "fp32_logits", "a hand LoRA loop of Qwen3-4B (checkpointing, 4 x 2048 "
                           "tokens) whose loss adds an entropy bonus on logits.float(): the fp32 logits, their shifted "
                           "copy, two log-softmaxes and a softmax over 152k entries, 4.6 GiB each, about 28 GiB "
                           "before the backward"),
    "perplexity_sliding_window": (48, "rtx-a6000", "eager_attention", "the sliding-window perplexity recipe (windows "
                                  "of 16,384 tokens, stride 8,192) on Qwen3-4B loaded with attn_implementation="
                                  "'eager': each layer's scores, 32 heads x 16,384^2, are 16 GiB in bf16 and 32 GiB "
                                  "in fp32 for the softmax"),
    "qlora_chat_train_embeddings": (24, "rtx4090", "kbit_prep_fp32", "a ChatML QLoRA of Qwen3-8B (Trainer) with "
                                    "modules_to_save=['embed_tokens', 'lm_head'] after prepare_model_for_kbit_training: "
                                    "the unquantized 152k x 4096 embeddings and head are cast to fp32 (4.6 GiB), "
                                    "their trainable copies are fp32 too (4.6), with fp32 gradients (4.6) and AdamW "
                                    "states (9.3)"),
    "sft_books_no_checkpointing": (24, "rtx4090", "batch_or_seq", "a TRL SFT LoRA of Qwen3-4B on books at "
                                   "max_length=8192 (batch 1) with gradient_checkpointing=False set explicitly (TRL's "
                                   "default is True): every layer's activations for 8,192 tokens, tens of GiB"),
    "partial_unfreeze_loop": (24, "rtx4090", "ddp_replica", "a hand loop meant to train the top two layers of "
                              "Qwen3-4B whose freeze test reads `if \"layers.34\" in name or \"layers.35\" or ...`: "
                              "the bare string is true, so all 4.0B parameters train (bf16 weights 7.5 GiB, gradients "
                              "7.5, AdamW states 15)"),
    "grpo_report_summaries": (24, "rtx4090", "long_sample", "a TRL GRPO LoRA of Qwen3-4B (no vLLM) summarizing "
                              "incident reports whose prompts are built from the whole document (GRPO has no prompt "
                              "cap): six of 40 reports are ~59,000 tokens, two in the first generation batch of 16 "
                              "(4 prompts x 4), so the prefill is 16 x ~59k tokens"),
    # the nineteenth batch (capture-s22), written blind (session 22): one GPU, seven causes in eight forms no earlier
    # script has, written and labelled by a writer who never read or ran the doctor; the arithmetic of each is in
    # oom_scenarios/CAPTURE_S22.md
    "accelerate_domain_lora": (12, "rtx3060", "resume_state", "a hand accelerate LoRA loop of Qwen3-4B that resumes "
                               "with accelerator.load_state(..., map_location='on_device'): the saved state holds the "
                               "whole model (7.5 GiB, frozen base included), loaded onto the GPU beside the model"),
    "sft_story_samples": (24, "rtx4090", "generation_batch", "a TRL SFT LoRA of Qwen3-4B with a sampling callback that "
                          "every 10 steps generates 4 continuations of all 64 held-out openings in one generate(): "
                          "256 sequences of ~350 prompt tokens + 512 new, a KV cache of 13 GiB after the prefill"),
    "embed_books_index": (24, "rtx4090", "eager_attention", "embedding books with Qwen3-4B (AutoModel, last-token "
                          "pooling) at 8 x 8,192 tokens, loaded with attn_implementation='eager' in place of the "
                          "recipe's flash_attention_2: each layer's scores are 8 x 32 x 8,192^2, 32 GiB in bf16"),
    "recipe_lora_trainer": (24, "rtx3090", "ddp_replica", "a Trainer LoRA of Qwen3-4B that sets requires_grad=True on "
                            "every parameter after get_peft_model (a forum fix for 'element 0 of tensors does not "
                            "require grad'): a full fine-tune, 7.5 GiB of gradients and 15 GiB of AdamW state"),
    "claims_classifier_lora": (16, "rtx4080", "eval_batch", "a sequence-classification LoRA of Qwen3-4B (Trainer) with "
                               "per_device_eval_batch_size=512: the 500-claim validation split in one no-grad forward "
                               "of 500 x ~512 tokens, 4.6 GiB per MLP activation"),
    "sft_chosen_responses": (16, "rtx4060ti", "long_sample", "a Trainer LoRA of Qwen3-4B on the chosen answers of "
                             "preference pairs whose tokenization truncates the prompt but not the answer: five "
                             "answers are ~46,000 tokens, so a batch holding one is 2 x ~46,500 tokens"),
    "sft_books_deterministic": (24, "rtx4090", "eager_attention", "a TRL SFT LoRA of Qwen3-4B on books at "
                                "max_length=8192 run inside sdpa_kernel(SDPBackend.MATH) for repeatable losses: the "
                                "math kernel materializes each layer's 32 x 8,192^2 scores (8 GiB in fp32)"),
    "pipeline_assisted_replies": (22, "l4", "load_too_big", "pipeline('text-generation') of Qwen3-8B in bf16 (15.3 "
                                  "GiB) with assistant_model='Qwen/Qwen3-4B' for assisted generation: the 7.5 GiB "
                                  "draft model moved onto a 22 GiB card beside it"),
    # the twentieth batch (capture-s23), written blind (session 23): one GPU, seven causes in eight forms no earlier
    # script has, written and labelled by a writer who never read or ran the doctor; the arithmetic of each is in
    # oom_scenarios/CAPTURE_S23.md
    "support_lora_loop": (24, "rtx4090", "batch_or_seq", "a hand LoRA loop of Qwen3-4B (4 x 1024, checkpointing "
                          "enabled) whose baseline validation at step 0 calls model.eval() and never model.train(): "
                          "checkpointing runs only in training mode, so every layer keeps its activations (~28 GiB)"),
    "distill_student_4b": (20, "rtx4000-ada", "load_too_big", "a Trainer distillation of a Qwen3-4B LoRA student "
                           "from a Qwen3-8B teacher loaded in bf16 onto a 20 GiB card (15.3 GiB): the Trainer's move of "
                           "the 7.5 GiB student does not fit beside it, where a 4-bit teacher (5.7 GiB) does"),
    "sft_domain_docs": (16, "rtx4080", "long_sample", "a TRL SFT LoRA of Qwen3-4B at max_length=2048 on a dataset "
                        "tokenized by hand without truncation and passed with skip_prepare_dataset=True, which skips "
                        "TRL's truncation: micro-batch 21 holds the 57,798-token document, 4 x 57,798 tokens"),
    "qa_calibration_lora": (24, "rtx4090", "eval_logits", "a Trainer LoRA of Qwen3-4B with batch_eval_metrics=True "
                            "whose stateful calibration metric appends every eval batch's full-vocabulary logits "
                            "(8 x 1024 x 152k bf16, 2.3 GiB) to a list on the GPU until the last batch"),
    "dpo_support_prefs": (24, "rtx4090", "eval_batch", "a TRL DPO LoRA of Qwen3-4B with precompute_ref_log_probs=True "
                          "and precompute_ref_batch_size=256: the reference pass is one no-grad forward of 400 "
                          "sequences (200 pairs) x 1,024 tokens, 7.4 GiB per MLP activation"),
    "sft_support_chat_8b": (24, "rtx4090", "fp32_training", "a TRL SFT LoRA of Qwen3-8B whose model_init_kwargs give "
                            "the dtype under the old key torch_dtype='bfloat16': TRL 1.16 adds dtype=float32 when "
                            "'dtype' is absent, which wins, so 30.5 GiB of fp32 weights load onto cuda:0"),
    "review_replies_generate": (16, "rtx4080", "generation_batch", "batched reply generation with Qwen3-4B (batch "
                                "32, 256 new tokens) whose encode() pads every prompt to max_length=4096 "
                                "(padding='max_length') where the longest is ~540 tokens: a prefill of 32 x 4,096 "
                                "tokens, an 18 GiB KV cache"),
    "chapter_summaries": (24, "rtx4090", "generation_batch", "summarizing books with Qwen3-4B, batches of 8 prompts "
                          "truncated at 6,144 tokens, with num_beams=4: the beams are expanded before the prefill, "
                          "32 x 6,144 tokens, a KV cache of 27 GiB"),
}

LAUNCH = {
    "ddp_full_ft": "torchrun --nproc_per_node 2 {script}",
    "ddp_lora_7b": "torchrun --nproc_per_node 2 {script}",
    "fsdp_full_7b": "accelerate launch --config_file fsdp.yaml {script}",
    "ddp_lora_batch": "torchrun --nproc_per_node 2 {script}",
    "ddp_eval_metrics": "torchrun --nproc_per_node 2 {script}",
    "fsdp_lora_batch": "accelerate launch --config_file fsdp.yaml {script}",
    "ddp_long_sample": "torchrun --nproc_per_node 2 {script}",
    "ddp_beside_notebook": "torchrun --nproc_per_node 2 {script}",
    "ddp_lora_moe": "torchrun --nproc_per_node 2 {script}",
    "ds_zero2_full": "deepspeed --num_gpus 2 {script}",
    "ds_zero3_lora_batch": "torchrun --nproc_per_node 2 {script}",
    "ds_zero3_full_7b": "deepspeed --num_gpus 2 {script}",
    "grpo_zero3_lora": "accelerate launch --config_file zero3.yaml {script}",
    "ds_zero2_lora_7b": "deepspeed --num_gpus 2 {script}",
}
"""How a scenario is launched where it is not `python NAME.py`; the command is the first line of its pasted output,
as users paste it (`$ torchrun ...`). The DeepSpeed scenarios need deepspeed, which the GPU image lacks and PyPI has as
an sdist only: `DS_BUILD_OPS=0 pip wheel --no-deps --no-build-isolation deepspeed-0.19.8.tar.gz` builds a pure-Python
wheel (no compiled ops, so no CPU Adam offload), carried with hjson, msgpack, ninja, py-cpuinfo, einops and pydantic. Multi-GPU scenarios run on the nvidia-h200-x2 machine: every process caps the
allocator of its own GPU (LOCAL_RANK), and a single process that sees both GPUs caps both."""
GPUS = {**{n: 2 for n in LAUNCH}, "dataparallel_lora": 2}
"""GPUs a scenario needs (1 where not listed)."""

FSDP_YAML = """compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_cpu_ram_efficient_loading: true
  fsdp_offload_params: false
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
mixed_precision: bf16
num_machines: 1
num_processes: 2
"""

ZERO3_YAML = """compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  deepspeed_multinode_launcher: standard
  offload_optimizer_device: none
  offload_param_device: none
  zero3_init_flag: true
  zero3_save_16bit_model: true
  zero_stage: 3
mixed_precision: bf16
num_machines: 1
num_processes: 2
"""
"""accelerate's DeepSpeed ZeRO-3 config, as TRL's and open-r1's recipes ship it (recipes/accelerate_configs/zero3.yaml)."""

DS_CONFIG = {"ds_z2.json": 2, "ds_z3.json": 3}
"""DeepSpeed configs the scenarios name, by ZeRO stage: the Trainer fills the 'auto' values; no offload (the CPU Adam op
would have to be compiled on the machine)."""


def ds_config(stage: int) -> str:
    zero = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage == 3:
        zero.update({"stage3_gather_16bit_weights_on_model_save": True})
    return json.dumps({"zero_optimization": zero, "bf16": {"enabled": "auto"}, "gradient_clipping": "auto",
                       "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                       "train_batch_size": "auto"}, indent=1)


SCRIPT_OF = {"qlora_prep_8gb": "qlora_batch"}
"""A scenario that runs another's script (on another card): qlora_prep_8gb is qlora_batch's script on 8 GiB."""


def script_path(name: str) -> Path:
    """The script a scenario runs: benchmarks/oom_scenarios/NAME.py, or the one it shares (SCRIPT_OF)."""
    return HERE / "oom_scenarios" / f"{SCRIPT_OF.get(name, name)}.py"


HOLDS = {"lora_beside_notebook": 16, "ddp_beside_notebook": 16,
         "qlora_beside_server": 16, "dpo_second_run": 16, "eval_generations_beside_training": 10,
         "accelerate_lora_shared_gpu": 14, "reward_model_lora": 12,
         "grpo_shared_gpu": 14, "merge_checkpoint_adapter": 14,
         "review_classifier_shared": 17, "rerank_beside_notebook": 10}  # GiB another process holds on the card during the run
HOLD_GPU = {"ddp_beside_notebook": 1}  # the GPU it holds them on (0 where not listed)
HOLDER = ("import sys, time, torch; x = torch.empty({gib} * 1024**3, dtype=torch.uint8, device='cuda'); "
          "print('held', flush=True); time.sleep(3600)")

MODELS = {"Qwen/Qwen2.5-3B": "qwen2.5-3b", "Qwen/Qwen2.5-7B": "qwen2.5-7b", "Qwen/Qwen3-4B": "qwen3-4b",
          "Qwen/Qwen3-8B": "qwen3-8b", "Qwen/Qwen3-30B-A3B": "qwen3-30b-a3b",
          "meta-llama/Llama-3.1-8B": "llama-3.1-8b"}
VOCAB = 5000  # words w0..w4999: about 6 characters (tokens) each with the space

SITE = '''import os
if os.environ.get("CAP_GIB") and (os.environ.get("LOCAL_RANK") or os.environ.get("CAP_ALL_GPUS")):
    # a worker of a launch (LOCAL_RANK: its own GPU), or a plain process (every GPU it sees); a launcher
    # (torchrun, accelerate) has neither and touches no GPU
    import torch
    rank = os.environ.get("LOCAL_RANK")
    for dev in ([int(rank)] if rank else range(torch.cuda.device_count())):
        torch.cuda.set_device(dev)
        free, total = torch.cuda.mem_get_info(dev)
        context = total - free  # this process's CUDA context on the card (and anything else already on it)
        cap = float(os.environ["CAP_GIB"]) * 1024**3 - context
        torch.cuda.set_per_process_memory_fraction(cap / total, dev)
        if dev == 0 or rank:
            with open(os.environ["CAP_LOG"] + ("" if rank in (None, "0") else "." + rank), "w") as f:
                f.write(f"{context} {int(cap)} {total}\\n")
    torch.cuda.set_device(int(rank) if rank else 0)
'''


ADAPTERS = {"qwen3-8b-support-qlora": "Qwen/Qwen3-8B", "qwen3-8b-support-qlora-v2": "Qwen/Qwen3-8B"}
"""LoRA adapters (folder: base model) a scenario loads as users load the one they trained: r=16 on every linear layer,
random A and zero B, built on the meta device from the catalogue's shapes (no weights read, no GPU)."""


def save_adapter(out: Path, base: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from qlorafit.core.catalog import model_config

    fields = dict(model_config(MODELS[base]))
    cfg = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(v.shape, generator=g) * 0.01 if "lora_A" in k else torch.zeros(v.shape)).to(torch.bfloat16)
             for k, v in get_peft_model_state_dict(peft_model).items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "adapter_model.safetensors"))
    peft_config = peft_model.peft_config["default"]
    peft_config.base_model_name_or_path = base
    peft_config.save_pretrained(str(out))


TICKET_LOGS = (9, 51, 88, 130)
"""The tickets of tickets.jsonl with a pasted log of 10,000 words (ticket_classifier_lora)."""

LONG_REPORTS = (4, 9, 17, 22, 30, 35)
"""The incident reports of reports.jsonl that are 10,000 words long (about 59,000 tokens), among 40; GRPO's sampler
(seed 42) draws 22 and 9 among the first four prompts (grpo_report_summaries)."""

LONG_PAIRS = (3, 17, 29, 41, 53)
"""The pairs of prefs_long.jsonl whose chosen answer is 8,000 words long."""

LORA_JSON = {"model_name_or_path": "Qwen/Qwen3-8B", "torch_dtype": "float32", "train_file": "train.jsonl",
             "max_length": 1024, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
             "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
             "per_device_train_batch_size": 1, "gradient_accumulation_steps": 16, "learning_rate": 2e-4,
             "num_train_epochs": 1, "output_dir": "qwen3-8b-lora"}
"""configs/qwen3_8b_lora.json, the experiment config json_config_fp32 reads (its torch_dtype is the mistake)."""

MODELS_OF = {"json_config_fp32": [LORA_JSON["model_name_or_path"]], "lora_on_merged_checkpoint": ["Qwen/Qwen3-8B"]}
"""Models a scenario uses that its script does not name (json_config_fp32 reads its model id from the JSON,
lora_on_merged_checkpoint loads a merged checkpoint folder built from Qwen3-8B, MERGED)."""

MERGED = {"qwen3-8b-sft-merged": ("Qwen/Qwen3-8B", "float32")}
"""Merged checkpoints (folder: base model, the dtype its config.json records), as a merge script that merged and saved
in float32 leaves them: the base's files linked, its config.json rewritten with that dtype (the weights stay bf16 on
disk; from_pretrained(dtype='auto') reads the config's dtype and loads them in it)."""


def save_merged(work: Path, folder: str, base: str, dtype: str) -> None:
    src, out = (work / base).resolve(), work / folder
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != "config.json" and not (out / f.name).exists():
            (out / f.name).symlink_to(f)
    cfg = json.loads((src / "config.json").read_text())
    for key in ("dtype", "torch_dtype"):
        if key in cfg or key == "dtype":
            cfg[key] = dtype
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

CHECKPOINT_SCRIPT = """
import os, torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup
model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen3-4B", dtype=torch.bfloat16).cuda()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=20, num_training_steps=400)
for _ in range(2):
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    scheduler.step()
optimizer.zero_grad(set_to_none=True)
os.makedirs("checkpoints", exist_ok=True)
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": 150}, "checkpoints/last.pt")
print("checkpoint written", flush=True)
"""
"""lora_resume_checkpoint's checkpoints/last.pt as its own loop saves it (from the GPU: the tensors' location is cuda:0),
written by a separate process (the runner itself never touches the GPU) with no cap, before the scenarios run."""

ACCELERATE_STATE_SCRIPT = """
import torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup
accelerator = Accelerator(mixed_precision="bf16", gradient_accumulation_steps=8)
model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen3-4B", dtype=torch.bfloat16)
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=50, num_training_steps=2000)
loader = DataLoader(list(range(16)), batch_size=1, shuffle=True)
model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
for _ in range(2):
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    scheduler.step()
optimizer.zero_grad(set_to_none=True)
accelerator.save_state("runs/qwen3-4b-domain-lora/checkpoints/step_000300")
print("accelerate state written", flush=True)
"""
"""accelerate_domain_lora's runs/qwen3-4b-domain-lora/checkpoints/step_000300/ as its loop's accelerator.save_state
leaves it: model.safetensors holds the PeftModel's whole state dict (the frozen bf16 base too, 7.5 GB; the tied head
dropped), optimizer.bin the LoRA's AdamW state, scheduler.bin, random_states_0.pkl; written like CHECKPOINT_SCRIPT."""
CHECKPOINTS = {"lora_resume_checkpoint": (CHECKPOINT_SCRIPT, "checkpoints/last.pt"),
               "accelerate_domain_lora": (ACCELERATE_STATE_SCRIPT,
                                          "runs/qwen3-4b-domain-lora/checkpoints/step_000300/model.safetensors")}
"""Checkpoints a scenario resumes from (name: the script that writes it, the file that says it is written)."""


def make_checkpoints(work: Path, names: list) -> None:
    for name, (script, written) in CHECKPOINTS.items():
        if name in names and not (work / written).exists():
            subprocess.run([sys.executable, "-c", script], cwd=work, check=True)


def words(rng: random.Random, n: int) -> str:
    return " ".join(f"w{rng.randrange(VOCAB)}" for _ in range(n))


def prepare(work: Path, needed: set | None = None) -> None:
    """Models (those in `needed`, or all), tokenizer, data files and the sitecustomize in `work`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    from gpu_common import build_model

    # a byte-level BPE with no merges: one token per byte, so a sample's length in tokens is its length in characters;
    # transformers 5 reads it as Qwen2Tokenizer (the model type's tokenizer), which takes a byte-level vocabulary
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + sorted(ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    for local, name in MODELS.items():
        if needed is not None and local not in needed:
            continue
        d = Path(build_model(name, str(work / "_models")))
        (work / local).parent.mkdir(parents=True, exist_ok=True)
        if not (work / local).exists():
            (work / local).symlink_to(d)
        fast.save_pretrained(d)
    rng = random.Random(0)
    with open(work / "train.jsonl", "w") as f:
        for _ in range(400):
            f.write(json.dumps({"text": words(rng, rng.randrange(250, 350))}) + "\n")
    with open(work / "mixed.jsonl", "w") as f:
        for i in range(200):
            f.write(json.dumps({"text": words(rng, 10000 if i == 37 else rng.randrange(40, 80))}) + "\n")
    with open(work / "prefs.jsonl", "w") as f:
        for _ in range(200):
            f.write(json.dumps({"prompt": words(rng, 60), "chosen": words(rng, 150), "rejected": words(rng, 150)}) + "\n")
    with open(work / "books.jsonl", "w") as f:
        for _ in range(64):
            f.write(json.dumps({"text": words(rng, 3000)}) + "\n")
    with open(work / "chat.jsonl", "w") as f:  # conversations ("messages"), four of them very long (about 59k tokens)
        for i in range(48):
            n = 10000 if i in (5, 17, 29, 41) else rng.randrange(100, 200)
            f.write(json.dumps({"messages": [{"role": "system", "content": "You are a helpful assistant."},
                                             {"role": "user", "content": words(rng, rng.randrange(30, 60))},
                                             {"role": "assistant", "content": words(rng, n)}]}) + "\n")
    rng = random.Random(19)
    with open(work / "prefs_long.jsonl", "w") as f:  # 60 pairs, five with a chosen answer of 8,000 words (~46k tokens)
        for i in range(60):
            f.write(json.dumps({"prompt": words(rng, 60), "chosen": words(rng, 8000 if i in LONG_PAIRS else 150),
                                "rejected": words(rng, 150)}) + "\n")
    (work / "configs").mkdir(exist_ok=True)
    (work / "configs" / "qwen3_8b_lora.json").write_text(json.dumps(LORA_JSON, indent=2) + "\n")
    rng = random.Random(2020)
    with open(work / "tickets.jsonl", "w") as f:  # 160 support tickets labelled 0-7, four with a pasted log (~58k tokens)
        for i in range(160):
            n = 10000 if i in TICKET_LOGS else rng.randrange(30, 80)
            f.write(json.dumps({"text": words(rng, n), "label": rng.randrange(8)}) + "\n")
    rng = random.Random(1919)
    with open(work / "reviews.jsonl", "w") as f:  # 300 product reviews labelled 0-4 (classifier_amp_float)
        for _ in range(300):
            f.write(json.dumps({"text": words(rng, rng.randrange(30, 80)), "label": rng.randrange(5)}) + "\n")
    rng = random.Random(2121)
    with open(work / "reports.jsonl", "w") as f:  # 40 incident reports, six of about 59k tokens (LONG_REPORTS)
        for i in range(40):
            f.write(json.dumps({"document": words(rng, 10000 if i in LONG_REPORTS else rng.randrange(80, 150))}) + "\n")
    rng = random.Random(2222)
    with open(work / "claims.jsonl", "w") as f:  # 2,000 claims labelled 0-3, 350-520 tokens (claims_classifier_lora)
        for _ in range(2000):
            f.write(json.dumps({"text": words(rng, rng.randrange(60, 90)), "label": rng.randrange(4)}) + "\n")
    for adapter, base in ADAPTERS.items():
        if (work / base).exists() and not (work / adapter / "adapter_config.json").exists():
            save_adapter(work / adapter, base)
    for folder, (base, dtype) in MERGED.items():
        if (work / base).exists() and not (work / folder / "config.json").exists():
            save_merged(work, folder, base, dtype)
    (work / "fsdp.yaml").write_text(FSDP_YAML)
    (work / "zero3.yaml").write_text(ZERO3_YAML)
    for name, stage in DS_CONFIG.items():
        (work / name).write_text(ds_config(stage))
    (work / "_site").mkdir(exist_ok=True)
    (work / "_site" / "sitecustomize.py").write_text(SITE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/oomcap")
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=int, default=240)
    a = ap.parse_args()
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    names = [n for n in SCENARIOS if not a.only or n in a.only.split(",")]
    needed = {m for n in names for m in MODELS if m in script_path(n).read_text()}
    needed |= {m for n in names for m in MODELS_OF.get(n, ())}
    prepare(work, needed)
    make_checkpoints(work, names)
    from gpu_common import provenance

    facts = {"provenance": provenance(" ".join(["python"] + sys.argv)), "runner_pid": os.getpid(), "runs": {}}
    for lib in ("trl", "datasets", "accelerate", "deepspeed"):
        try:
            facts["provenance"][lib] = __import__(lib).__version__
        except ImportError:
            facts["provenance"][lib] = None
    for name in names:
        gib, card, cause, what = SCENARIOS[name]
        script = work / f"{name}.py"
        script.write_text(script_path(name).read_text())
        env = dict(os.environ, CAP_GIB=str(gib), CAP_LOG=str(work / "_cap.txt"), HF_HUB_OFFLINE="1", CAP_ALL_GPUS="1",
                   TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   PYTHONPATH=os.pathsep.join([str(work / "_site"), os.environ.get("PYTHONPATH", "")]))
        holder = None
        if name in HOLDS:  # another process on the card, as a forgotten notebook kernel would be
            holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(gib=HOLDS[name])], stdout=subprocess.PIPE,
                                      text=True, env=dict(os.environ, CUDA_VISIBLE_DEVICES=str(HOLD_GPU.get(name, 0))))
            holder.stdout.readline()  # it says 'held' once the memory is allocated
        t = time.time()
        try:
            if name in LAUNCH:  # the launcher itself holds no GPU: only its workers (LOCAL_RANK) cap theirs
                command = LAUNCH[name].format(script=script.name)
                env.pop("CAP_ALL_GPUS")
                module = {"torchrun": "torch.distributed.run", "accelerate": "accelerate.commands.launch",
                          "deepspeed": "deepspeed.launcher.runner"}
                head, *rest = command.split()
                rest = rest[1:] if head == "accelerate" else rest  # 'accelerate launch ...': the module is launch's
                argv = [sys.executable, "-m", module[head]] + rest
            else:
                command, argv = f"python {script.name}", [sys.executable, script.name]
            p = subprocess.run(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=a.timeout)
            log, rc = p.stdout, p.returncode  # as the console showed it, interleaved
            if name in LAUNCH:
                log = f"$ {command}\n{log}"  # users paste the launch command with a multi-GPU error
        except subprocess.TimeoutExpired as e:
            log, rc = (e.stdout or b"").decode(errors="replace"), "timeout"
        if holder is not None:
            holder.kill()
            holder.wait()
        cap = (work / "_cap.txt").read_text().split() if (work / "_cap.txt").exists() else []
        facts["runs"][name] = {"rc": rc, "seconds": round(time.time() - t, 1), "card_gib": gib, "card": card,
                               "cause": cause, "what": what, "context_bytes": int(cap[0]) if cap else None,
                               "cap_bytes": int(cap[1]) if cap else None, "device_total_bytes": int(cap[2]) if cap else None,
                               "oom": "out of memory" in log.lower() or "dispatched on the cpu" in log.lower(),
                               "log": log}
        print(f"{name}: rc={rc} {facts['runs'][name]['seconds']}s oom={facts['runs'][name]['oom']}", flush=True)
        (out / "capture.json").write_text(json.dumps(facts, indent=1) + "\n")


if __name__ == "__main__":
    main()
