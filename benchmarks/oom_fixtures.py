"""Turn a capture of benchmarks/oom_capture.py into doctor fixtures: tests/fixtures/oom_captured/NAME.yaml.

    python benchmarks/oom_fixtures.py benchmarks/results/oom_capture/capture-s13.json \
        benchmarks/results/oom_capture/capture-s13b.json benchmarks/results/oom_capture/capture-s13c.json \
        benchmarks/results/oom_capture/capture-s13d.json benchmarks/results/oom_capture/capture-s14.json \
        benchmarks/results/oom_capture/capture-s14b.json benchmarks/results/oom_capture/capture-s14c.json \
        benchmarks/results/oom_capture/capture-s15.json benchmarks/results/oom_capture/capture-s15b.json \
        benchmarks/results/oom_capture/capture-s16.json benchmarks/results/oom_capture/capture-s18.json \
        benchmarks/results/oom_capture/capture-s18b.json benchmarks/results/oom_capture/capture-s18c.json \
        benchmarks/results/oom_capture/capture-s18d.json benchmarks/results/oom_capture/capture-s18e.json \
        benchmarks/results/oom_capture/capture-s18f.json benchmarks/results/oom_capture/capture-s19.json \
        benchmarks/results/oom_capture/capture-s19b.json benchmarks/results/oom_capture/capture-s19c.json \
        benchmarks/results/oom_capture/capture-s19d.json

A later capture file wins for a scenario both hold (capture-s13b re-ran qlora_batch on a larger card: on 8 GiB it had
failed before the batch, and that failure is kept as qlora_prep_8gb).

Each fixture holds what a user would paste and give the doctor: the console output from its last 'Traceback' (with
the twelve lines above it, progress bars as their last frame), the script as it ran, and the label the scenario was
built for (benchmarks/oom_capture.py SCENARIOS), with the phase read from the traceback's frames (PHASES, by hand).

The emulated card is written into the OOM message as a card of that size would print it: the H200's capacity, its free
memory and the 'N GiB allowed;' of the allocator cap become the card's size and what was free on it, and the runner's
own process (it built the models, about 0.6 GiB; `runner_pid` in the capture) is left out, since a user's card does not
hold it; another process the scenario put there (lora_beside_notebook's) stays, and what is free is the card less it
and this process. Every other byte is
as printed; the raw console output stays in the capture file.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "oom_captured"
sys.path.insert(0, str(ROOT / "benchmarks"))

PHASES = {  # where each failure happened, read from its traceback's frames
    "full_ft_trainer": "first_step",  # trainer.optimizer_step -> AdamW's first step allocates the moments
    "full_ft_sft": "first_step",
    "lora_batch_trainer": "first_step",  # the first forward
    "load_7b_chat": "load",  # from_pretrained's caching_allocator_warmup
    "eval_metrics_trainer": "eval",  # evaluation_loop concatenating the logits
    "generate_batch": "generation",
    "fp32_lora": "first_step",
    "long_sample_sft": "later_step",
    "kbit_prep_bf16": "first_step",
    "qlora_batch": "first_step",
    "qlora_prep_8gb": "load",  # peft's prepare_model_for_kbit_training, before the trainer exists
    "eval_batch_trainer": "eval",  # prediction_step's forward at the eval batch
    "lora_beside_notebook": "first_step",
    # capture-s13c, the second batch (out of sample: read and labelled before the doctor was run on it)
    "dpo_full": "load",  # DPOTrainer.__init__ loading the reference copy (caching_allocator_warmup)
    "sft_big_batch": "first_step",
    "beam_generate": "generation",
    "load_8b_16gb": "load",
    "eager_8k": "first_step",
    # capture-s13d, the third batch (out of sample for the session's final rules: read and labelled before the doctor
    # was run on it)
    "grpo_full": "first_step",  # GRPOTrainer.training_step
    "lora_no_ckpt_4k": "first_step",
    "eval_accum_sft": "eval",  # evaluation_loop concatenating the logits
    "qlora_eval_batch": "eval",  # prediction_step's forward at the eval batch
    "eager_long": "first_step",
    "dispatch_4bit": "load",
    # capture-s14, the fourth batch, two GPUs (nvidia-h200-x2; read and labelled before the doctor was run on it)
    "ddp_full_ft": "first_step",  # AdamW's _init_group at the first optimizer step, on each rank
    "ddp_lora_7b": "load",  # accelerate's prepare_model -> DistributedDataParallel.__init__ syncing the module states
    "fsdp_full_7b": "first_step",  # the first backward: FSDP2 unsharding (all-gather) a layer's parameters
    "ddp_lora_batch": "first_step",  # the first forward, inside DistributedDataParallel
    # capture-s14b, the fifth batch, two GPUs (read and labelled before the doctor was run on it)
    "ddp_eval_metrics": "eval",  # evaluation_loop concatenating the logits (nested_concat) at the first evaluation
    "fsdp_lora_batch": "first_step",  # the first forward under FSDP2
    "ddp_long_sample": "later_step",  # step 5 of 13 (the long document's batch)
    "ddp_beside_notebook": "first_step",  # rank 1's first forward, next to the other process
    # capture-s14c, a mixture of experts (read and labelled before the doctor was run on it)
    "qlora_moe_12gb": "load",  # from_pretrained's caching_allocator_warmup asks for 55.61 GiB
    "ddp_lora_moe": "load",  # Trainer.__init__ -> _move_model_to_device, on each rank
    # capture-s15, DeepSpeed on two GPUs (read and labelled before the doctor was run on it)
    "ds_zero2_full": "first_step",  # the first backward: ZeRO-2 flattening a gradient bucket to reduce it (0/25)
    "ds_zero3_lora_batch": "first_step",  # the first forward under ZeRO-3 (0/13)
    "ds_zero3_full_7b": "first_step",  # the first optimizer step: Adam's _init_group creating exp_avg (0/25)
    # capture-s15b (out of sample for capture-s15's fixes: read and labelled before the doctor was run on it)
    "grpo_zero3_lora": "generation",  # TRL's unwrap_model_for_generation gathering the ZeRO-3 shards (0/150)
    "ds_zero2_lora_7b": "first_step",  # the first backward: ZeRO-2 setting up its gradient buckets (0/25)
    "logits_fp32_3b": "first_step",  # the first forward's loss: cross_entropy on the fp32 logits (0/8)
    # capture-s18, -s18b, -s18c: twelve scenarios written blind (by a writer who never read or ran the doctor), read and
    # labelled before the doctor was run on them
    "sft_chat_model_max": "first_step",  # a micro-step of the first optimizer step (0/9): a long conversation drawn early
    "grpo_lora_generations": "generation",  # GRPOTrainer._prepare_inputs generating the group's completions (0/288)
    "eval_loop_keep_logits": "eval",  # the user's evaluation loop's forward, the kept logits of earlier batches beside it
    "eager_summarize": "generation",  # generate() -> _prefill -> eager_attention_forward
    "train_then_merge": "merge",  # from_pretrained of the base for the merge, after training finished
    "dpo_lora_batch": "first_step",  # DPOTrainer's first forward (0/13)
    "manual_loss_fp32": "first_step",  # the first batch's `logits.float()` in the user's loss
    "lora_bnb_not_passed": "first_step",  # the first forward (0/25)
    "accelerate_fp32_lora": "first_step",  # the first forward under autocast
    "full_ft_llama_loop": "first_step",  # the first optimizer step: Adam's _init_group creating the moments
    "pipeline_llama_12gb": "load",  # pipeline -> from_pretrained's caching_allocator_warmup
    "qlora_beside_server": "first_step",  # the first forward, next to the other process (0/25)
    # capture-s18d, -s18e: ten more written blind after the capture-s18 fixes, read and labelled before the doctor was
    # run on them (sft_eval_default_batch did not reach its evaluation within 70 s: no fixture)
    "pad_max_length_trainer": "first_step",  # Trainer.compute_loss at 0/25
    "loss_accum_graph": "later_step",  # the user's loop, the fifth or sixth micro-batch's loss (no step shown)
    "generate_with_scores": "generation",  # generate() -> _sample
    "dpo_second_run": "first_step",  # DPOTrainer's first forward (0/39), next to the other process
    "trainer_predict_test": "eval",  # Trainer.predict -> evaluation_loop -> nested_concat
    "attention_maps": "unknown",  # a plain forward of the user's script (no generate, no training): eager attention
    "embed_corpus_once": "unknown",  # the user's embed() forward over the whole corpus (inference, no generate)
    "fp32_master_fp16": "first_step",  # Trainer.compute_loss at 0/25
    "sft_packing_16k": "first_step",  # SFTTrainer's first forward (0/6)
    # capture-s18f: eight more written blind after the capture-s18d fixes, read and labelled before the doctor was run
    "sft_modelconfig_qlora": "load",  # from_pretrained's caching_allocator_warmup (bf16: the 4-bit flag never set)
    "finetune_loop_truncation": "later_step",  # the user's loop, the batch holding the long document (no step shown)
    "eval_generations_beside_training": "load",  # from_pretrained's caching_allocator_warmup beside the other process
    "best_of_n_sampling": "generation",  # generate() -> _prefill
    "accelerate_accumulate_batch": "first_step",  # the user's accelerate loop, its first micro-batch's loss
    "full_ft_adam8bit": "first_step",  # the first optimizer step: bitsandbytes' 8-bit AdamW creating its state (0/100)
    "distill_kl_loss": "first_step",  # the first batch's fp32 KL of the user's loop (one <module> frame)
    "eval_on_start_trainer": "eval",  # Trainer._evaluate before the first step (eval_on_start)
    # capture-s19: eight more written blind in session 19 (seven ran out; sft_baseline_eval_batch fitted, no fixture),
    # read and labelled before the doctor was run on them
    "qlora_merge_bf16_base": "merge",  # from_pretrained of the bf16 base for merge_and_unload, after training finished
    "chat_with_adapter": "load",  # AutoPeftModelForCausalLM -> from_pretrained's caching_allocator_warmup
    "thinking_static_cache": "generation",  # generate() -> _prefill
    "embed_inbatch_negatives": "first_step",  # the user's loop, the first batch's forward (no step shown)
    "lora_context_window": "later_step",  # Trainer step 6 of 26, the batch holding the long document
    "trainer_sequence_mean_loss": "first_step",  # training_step -> the user's compute_loss cross_entropy (0/N)
    "accelerate_lora_shared_gpu": "first_step",  # the user's accelerate loop, its first forward beside the other process
    # capture-s19b (capture-s19b.json and capture-s19c.json): eight more written blind in session 19 after capture-s19's
    # fixes, read and labelled before the doctor was run on them
    "json_config_fp32": "load",  # from_pretrained's caching_allocator_warmup (float32 from the JSON config)
    "eval_softmax_probs": "eval",  # the evaluation loop's nested_concat of the kept probabilities (step 5)
    "pipeline_batch_summaries": "generation",  # pipeline(...) -> generate's forward at batch 64
    "reward_model_lora": "load",  # from_pretrained's caching_allocator_warmup beside the other process
    "accumulate_loss_list": "first_step",  # the user's loop, a later micro-batch's forward before the first backward
    "dpo_no_max_length": "later_step",  # DPOTrainer step 2 of 8 (bar 1/8), the batch with the long pair
    "lora_resume_checkpoint": "load",  # torch.load of the checkpoint onto cuda:0 (storage .to)
    "dpo_eval_batch": "eval",  # the evaluation at step 5 (bar 5/40), the LoRA forward at eval batch 32
    # capture-s19d: eight more written blind in session 19 after capture-s19b's fixes, read and labelled before the
    # doctor was run on them
    "sft_eager_qlora": "first_step",  # SFTTrainer's first step (0/8): eager attention's softmax over 12k tokens
    "merge_dequantize": "merge",  # the merge script's model.dequantize() of the 4-bit base on the GPU
    "lora_8bit_max_memory": "load",  # from_pretrained's device map: bitsandbytes refuses the CPU-dispatched modules
    "eval_full_documents": "eval",  # the evaluation at step 5 (eval bar 9/15), the batch holding the long document
    "sft_by_name_no_dtype": "load",  # SFTTrainer loading the model by name: caching_allocator_warmup in float32
    "sft_quant_config_ignored": "load",  # the Trainer moving the bf16 model onto the GPU (Module._apply)
    "generate_keep_outputs": "generation",  # the third batch's generate(), beside the kept outputs
    "classifier_amp_float": "load",  # model.float().to(device): Module._apply
    # capture-s20: eight written blind in session 20, read and labelled before the doctor was run on them
    "embed_docs_no_truncation": "unknown",  # the user's embed() forward at batch 32 (inference, no generate)
    "generate_hidden_states": "generation",  # generate() -> _sample's prefill forward (an MLP of the 24 prompts)
    "sft_flag_kbit_prep": "load",  # peft's prepare_model_for_kbit_training casting to fp32, before the trainer
    "merge_fp32_base": "merge",  # the merge script's from_pretrained of the fp32 base (caching_allocator_warmup)
    "grpo_shared_gpu": "generation",  # GRPOTrainer's first training_step (0/75): generate's forward
    "best_of_n_reward_model": "load",  # from_pretrained of the reward model beside the policy
    "lora_on_merged_checkpoint": "load",  # from_pretrained(dtype='auto') of a float32 checkpoint
    "reward_model_batch": "first_step",  # RewardTrainer's first step (0/12): compute_loss's forward
    # capture-s20b: eight more written blind in session 20 after capture-s20's fixes, read and labelled before the
    # doctor was run on them
    "merge_compare_copy": "merge",  # copy.deepcopy of the PeftModel to merge the copy (merge_and_unload after it)
    "notebook_pipeline_by_id": "load",  # pipeline(model=id) loading the weights again: caching_allocator_warmup
    "orpo_lora_batch": "first_step",  # ORPO's first step (0/13): compute_loss's forward
    "ticket_classifier_lora": "later_step",  # the fourth step (3/36): the long ticket's attention mask
    "merge_checkpoint_adapter": "merge",  # the merge script loading its bf16 base beside the other process's 14 GiB
    "doc_qa_cache_sessions": "generation",  # the user's question loop: deepcopy of the prompt cache, the 6th question
    "kto_lora_fast": "first_step",  # KTO's first step (0/25): a LoRA forward without checkpointing
    "lora_tf32_float32": "load",  # from_pretrained(dtype=torch.float32): caching_allocator_warmup
    # capture-s20c: eight more written blind in session 20 after capture-s20b's fixes, read and labelled before the
    # doctor was run on them
    "eval_no_grad_loop": "eval",  # the user's evaluate() before training: a LoRA forward with no torch.no_grad
    "dpo_ref_model_copy": "load",  # the explicit ref_model's from_pretrained beside the policy
    "map_pad_longest": "first_step",  # the Trainer's first step (0/26): the attention mask of rows padded to 57k
    "review_classifier_shared": "load",  # the Trainer moving the model to the GPU (Module._apply) beside the 17 GiB
    "merge_upcast_save": "merge",  # the merge script's merged.to(torch.float32) after merge_and_unload
    "self_consistency_generate": "generation",  # generate() -> _sample's prefill of 16 x 32 sequences
    "adapter_sweep_reload": "load",  # the second iteration's from_pretrained of the base, the first still held
    "chat_template_loop": "later_step",  # the user's own loop at the fifth conversation (no step shown)
    # capture-s21: eight written blind in session 21 after session 21's first study round, read and labelled before
    # the doctor was run on them
    "mc_eval_one_forward": "eval",  # the user's multiple-choice scoring: one forward of every question and option
    "chat_lm_head_cpu": "load",  # from_pretrained: bitsandbytes' validate_environment refuses the CPU lm_head
    "rerank_beside_notebook": "load",  # model.to('cuda') (Module._apply) beside the other process's 10 GiB
    "grpo_summaries_long_prompts": "generation",  # GRPO's generate() of 64 sequences: the prefill's forward
    "dpo_modelconfig_dtype": "load",  # DPOTrainer's create_model_from_path: caching_allocator_warmup of fp32 weights
    "pipeline_quant_kwarg": "load",  # pipeline's load_model -> from_pretrained: caching_allocator_warmup
    "sft_chat_lora_forgotten": "first_step",  # the first optimizer step: Adam's _init_group creating its moments
    "ticket_triage_generate": "generation",  # generate() of the third batch: the causal mask of rows padded to 57k
    # capture-s21b: eight more written blind in session 21 after capture-s21's fixes, read and labelled before the
    # doctor was run on them
    "probe_layer_features": "eval",  # the probe's no_grad forward at a later batch, every batch's hidden states kept
    "train_then_eval_subprocess": "load",  # the child process's from_pretrained beside the parent still holding its
    "entropy_bonus_loop": "first_step",  # the hand loop's first backward through the fp32 entropy of the logits
    "perplexity_sliding_window": "eval",  # the perplexity window's forward: eager_attention_forward's softmax
    "qlora_chat_train_embeddings": "first_step",  # the Trainer's first step: the loss's cross_entropy
    "sft_books_no_checkpointing": "first_step",  # the Trainer's first step: a LoRA forward with checkpointing off
    "partial_unfreeze_loop": "first_step",  # the first optimizer step: Adam's _init_group for every weight
    "grpo_report_summaries": "generation",  # GRPO's generate(): the causal mask of prompts 59k tokens long
    # capture-s22: eight written blind in session 22, run on an H200 (capture-s22.json); each phase read from its
    # traceback (every one failed where its writer expected)
    "accelerate_domain_lora": "load",  # accelerator.load_state(map_location='on_device'): safetensors onto the GPU
    "sft_story_samples": "generation",  # the sampling callback's generate() of 256 sequences at step 10
    "embed_books_index": "unknown",  # the user's embed() forward of the first batch (inference): eager scores
    "recipe_lora_trainer": "first_step",  # the first optimizer step: AdamW state for every weight
    "claims_classifier_lora": "eval",  # the first evaluation (step 25): one forward of 500 x ~512 tokens
    "sft_chosen_responses": "first_step",  # the 8th micro-batch of step 1 holds a 46,511-token answer (CPU smoke)
    "sft_books_deterministic": "first_step",  # the first forward under the math SDPA kernel
    "pipeline_assisted_replies": "load",  # pipeline's load_assistant_model: the draft's .to(cuda)
    # capture-s23: eight written blind in session 23; the phase each is expected to fail in, to be corrected from
    # the real traceback
    "support_lora_loop": "first_step",  # the first training forward after the step-0 validation (eval mode)
    "distill_student_4b": "load",  # the Trainer's _move_model_to_device of the student beside the bf16 teacher
    "sft_domain_docs": "later_step",  # step 6 (micro-batch 21) holds the 57,798-token document (CPU smoke)
    "qa_calibration_lora": "eval",  # the first evaluation (step 10): the 3rd-4th eval batch's forward
    "dpo_support_prefs": "eval",  # DPOTrainer.__init__'s reference log-prob precompute: one forward of 400 x 1024
    "sft_support_chat_8b": "load",  # TRL's from_pretrained of Qwen3-8B in fp32 straight onto cuda:0
    "review_replies_generate": "generation",  # the first generate()'s prefill of 32 x 4096 tokens
    "chapter_summaries": "generation",  # the first generate()'s beam-expanded prefill of 32 x 6144 tokens
}

_CAPACITY = re.compile(r"GPU (\d+) has a total capacity of [\d.]+ [KMG]iB of which [\d.]+ [KMG]iB is free\. "
                       r"((?:Process \d+ has [\d.]+ [KMG]iB memory in use\. )*)Including non-PyTorch memory, this "
                       r"process has ([\d.]+) ([KMG]iB|bytes) memory in use\. (?:[\d.]+ [KMG]iB allowed; )?")
_OTHER = re.compile(r"Process (\d+) has ([\d.]+) ([KMG]iB) memory in use\. ")
_UNIT = {"bytes": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def size(b: float) -> str:
    """As PyTorch's allocator prints a size."""
    return f"{b / 1024**3:.2f} GiB" if b >= 1024**3 else f"{b / 1024**2:.2f} MiB"


def as_card(log: str, gib: int, runner_pid: int | None) -> str:
    """The OOM message as a card of `gib` GiB prints it (see the module docstring)."""
    def one(m: re.Match) -> str:
        others = [o for o in _OTHER.finditer(m.group(2)) if runner_pid is None or int(o.group(1)) != runner_pid]
        used = float(m.group(3)) * _UNIT[m.group(4)] + sum(float(o.group(2)) * _UNIT[o.group(3)] for o in others)
        total = gib * 1024**3
        return (f"GPU {m.group(1)} has a total capacity of {size(total)} of which {size(max(total - used, 0))} is free. "
                + "".join(o.group(0) for o in others)
                + f"Including non-PyTorch memory, this process has {m.group(3)} {m.group(4)} memory in use. ")
    return _CAPACITY.sub(one, log)


def pasted(log: str) -> str:
    """From the last traceback to the end, with the twelve lines above it; a progress bar as its last frame. A
    multi-GPU launch (its command the log's first line, `$ torchrun ...`): the command, then from the first rank's
    traceback to the end, since the launcher's own traceback last (ChildFailedError) only says that a rank failed."""
    lines = [ln.rsplit("\r", 1)[-1].rstrip() for ln in log.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    if lines and lines[0].startswith("$ "):
        start = min((i for i, ln in enumerate(lines) if re.match(r"\[rank\d+\]: Traceback", ln)), default=1)
        return "\n".join([lines[0]] + lines[max(1, start - 12):]) + "\n"
    start = max((i for i, ln in enumerate(lines) if "Traceback (most recent call last)" in ln), default=0)
    return "\n".join(lines[max(0, start - 12):]) + "\n"


def main() -> None:
    from oom_capture import SCENARIOS, script_path

    runs = {}
    for path in sys.argv[1:]:
        cap = json.loads(Path(path).read_text())
        runs.update({n: (r, cap["provenance"], cap.get("runner_pid"), path) for n, r in cap["runs"].items()})
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (run, prov, pid, path) in runs.items():
        if not run["oom"]:
            print(name, "did not run out of memory: no fixture")  # sft_fp32_string, no_truncation_trainer in s13c
            continue
        gib, card, cause, what = SCENARIOS[name]
        error = as_card(pasted(run["log"]), gib, pid if pid is not None else 437)  # capture-s13 predates runner_pid; its logs name the runner Process 437 (612 MiB)
        script = script_path(name).read_text()
        doc = {"name": name, "what": what, "card": card, "card_gib": gib,
               "label": {"cause": cause, "phase": PHASES[name]},
               "captured": {k: prov.get(k) for k in ("gpu", "torch", "transformers", "peft", "trl", "datasets",
                                                       "bitsandbytes", "accelerate", "date")},
               "capture_file": str(Path(path).resolve().relative_to(ROOT)),
               "error": error, "script": script}
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(name, len(error))


if __name__ == "__main__":
    main()
