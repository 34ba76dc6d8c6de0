"""qlorafit doctor (issue 15, session 8): general mechanisms behind the misses of every held-out split at its first
measurement (tests/fixtures/oom_threads/README.md, 'session 8: misses by mechanism'). Each is checked on synthetic
text written for the mechanism, never on a thread's own words."""

import pytest

from qlorafit.doctor import diagnose
from qlorafit.doctor.foreign import read_posted
from qlorafit.doctor.parse import host_memory_named, parse


def _d(text, **kw):
    return diagnose(read_posted(text, **kw))


# --- which memory: Apple's unified memory is the GPU's ---------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Fine-tuning a 7B with mlx_lm.lora on my MacBook Pro with 32GB RAM: it runs out of memory after a few steps.",
    "LoRA training on an M3 Max (36 GB of RAM) and the RAM is full, then it crashes.",
    "[METAL] Command buffer execution failed: Insufficient Memory. My Mac mini has 16GB RAM.",
    "RuntimeError: MPS backend out of memory (MPS allocated: 17.50 GB, other allocations: 1.20 MB, max allowed: "
    "18.10 GB). Tried to allocate 512.00 MB on private pool. Training on an M2 with 24GB RAM.",
])
def test_ram_on_apple_unified_memory_is_the_gpus_memory(text):
    assert host_memory_named(text) is False
    d = _d(text)
    assert d.case.oom.kind == "cuda"
    assert d.primary.id != "cpu_ram" and all(f.id not in ("more_ram", "low_cpu_mem") for f in d.fixes[:1])


@pytest.mark.parametrize("text", [
    "Fine-tuning a 7B with LoRA on a Linux box with 32GB RAM: it runs out of memory on RAM while loading.",
    "OOM with 64G ram while tokenizing",
])
def test_ram_on_a_machine_with_its_own_gpu_memory_stays_host_ram(text):
    assert _d(text).primary.id == "cpu_ram"


# --- an out-of-memory told in words: read from its parts, not from a phrase list --------------------------------------

@pytest.mark.parametrize("text, kind", [
    ("Training dies with insufficient system memory on a 4 GPU node.", "cpu"),
    ("The host memory is not enough once every rank reads the checkpoint.", "cpu"),
    ("After two epochs the RAM is exhausted and the job dies.", "cpu"),
    ("the GPU memory is not enough for a 13B with LoRA", "cuda"),
    ("device memory exhausted at the first backward", "cuda"),
    ("加载到一半 GPU内存不足", "cuda"),
    ("Lack of VRAM when the batch grows to 8", "cuda"),
])
def test_a_memory_shortage_in_any_order_and_qualifier_is_an_oom_of_that_memory(text, kind):
    assert parse(text).kind == kind


@pytest.mark.parametrize("text", ["This trick saves memory.", "How do I reduce memory usage?", "out of curiosity, why?",
                                  "A memory-efficient optimizer"])
def test_memory_named_without_a_shortage_is_no_oom_form(text):
    from qlorafit.doctor.shortage import shortage

    assert shortage(text) is None


def test_a_memory_usage_that_climbs_past_a_figure_is_a_shortage():
    d = _d("Every rank reads the whole checkpoint when I load the full model, and the CPU memory usage climbs to over "
           "900G. Is there a way around this?")
    assert (d.case.oom.kind, d.case.oom.phase, d.primary.id) == ("cpu", "load", "cpu_ram")


@pytest.mark.parametrize("text, kind, phase", [
    ("Every rank reads the whole checkpoint when I load the full model; the CPU memory use is about 900G. Is there "
     "a way around this?", "cpu", "load"),
    ("Why does the memory usage go up so much with a 70B model?", "presumed", None),
])
def test_a_report_that_talks_about_memory_presumes_an_oom_of_the_memory_it_names(text, kind, phase):
    d = _d(text)
    assert (d.case.oom.kind, d.case.oom.form, d.case.oom.phase) == (kind, "presumed", phase)
    from qlorafit.doctor.report import confidence

    assert confidence(d)[0] == "low"  # nothing quoted says it ran out: the cause rests on the presumption


@pytest.mark.parametrize("text", ["Loading checkpoint shards stays at 2/4 forever, it is stuck there.",
                                  "The script hangs while loading the model, no error at all.",
                                  "加载模型的时候卡住了，没有报错"])
def test_a_load_that_stalls_without_an_error_is_host_ram(text):
    d = _d(text)
    assert d.case.oom.phase == "load" and d.primary.id == "cpu_ram"
    assert d.fixes[0].id in ("more_ram", "low_cpu_mem")
    assert _d(text + " nvidia-smi shows GPU memory at 23.5 of 24 GB").primary.id != "cpu_ram"  # a GPU named


# --- phase: a step the report says finished is not where it failed ---------------------------------------------------

@pytest.mark.parametrize("text, phase", [
    ("After merging the adapter into the base model, the second fine-tune OOMs.", None),
    ("导出模型之后再训练就爆显存了", None),
    ("I can load the model fine. But when generating 200 tokens it runs out of CUDA memory.", "generation"),
    ("Loading the model works without any problem; it is model.generate() that OOMs.", "generation"),
    ("It OOMs right after loading the checkpoint.", "load"),
    ("It OOMs while loading the checkpoint.", "load"),
    ("It could not load the model: CUDA out of memory.", "load"),
])
def test_a_step_the_report_says_finished_is_not_the_failures_phase(text, phase):
    assert parse(text).phase == phase


def test_a_step_said_finished_is_not_the_phase_in_a_later_sentence_either():
    text = "After the merge, training OOMs. The merge script is the one above; it still OOMs."
    assert parse(text).phase is None


@pytest.mark.parametrize("text", ["When I call the **chat** method it runs out of CUDA memory.",
                                  "response = model.chat(tokenizer, query) -> CUDA out of memory"])
def test_a_chat_models_chat_method_generates(text):
    assert parse(text).phase == "generation"


# --- ranking: what the report says worked rules causes out --------------------------------------------------------------

FULL_13B = "Full fine-tune of a 13B model with DDP on 4 x A100 80GB. "


@pytest.mark.parametrize("worked", ["It trains fine up to 8k context; at 16k it runs out of CUDA memory.",
                                    "With max_length 4096 it works, at 16384 CUDA out of memory.",
                                    "8k以下都正常，超过8k就OOM。"])
def test_a_run_that_fits_at_a_smaller_step_rules_out_what_does_not_grow_with_it(worked):
    assert _d(FULL_13B + "It runs out of CUDA memory.").primary.id == "ddp_replica"  # 16 bytes x 13B per GPU > 80 GB
    d = _d(FULL_13B + worked)
    assert d.primary.id in ("batch_or_seq", "long_sample")
    replica = next(x for x in d.causes if x.id == "ddp_replica")
    assert any("fits at a smaller length or batch" in e for e in replica.evidence)


def test_more_gpus_or_a_memory_size_is_no_smaller_step():
    for said in ("It works with 2 GPUs but not with 4, CUDA out of memory.", "It works with 24GB cards, not with 16GB: CUDA out of memory.",
                 "It works fine with 2 A100, with 4 it runs out of CUDA memory."):
        assert _d(FULL_13B + said).primary.id == "ddp_replica", said


@pytest.mark.parametrize("text", [
    "LoRA SFT of an 8B: without --max_length it runs out of CUDA memory; adding it, training starts.",
    "max_seq_length is not set, and the first step OOMs.",
    "不加--cutoff_len就爆显存，加上cutoff_len可以正常训练",
])
def test_a_length_cap_that_was_missing_makes_the_long_samples_the_cause(text):
    d = _d(text)
    assert d.primary.id == "long_sample" and d.fixes[0].id == "cap_length"


def test_a_length_cap_already_set_is_not_a_missing_one():
    d = _d("I already set max_length to 1024, how do I solve this? CUDA out of memory at the first step.")
    assert d.primary.id != "long_sample"


@pytest.mark.parametrize("text", [
    "Feeding a whole PDF paper as the input to the LoRA fine-tune gives CUDA out of memory.",
    "把整本小说作为输入进行微调就爆显存",
    "The alpaca dataset trains fine, but with my own dataset the fine-tune runs out of CUDA memory.",
    "用公开数据集没问题，换成自己的数据集微调就OOM",
])
def test_a_whole_document_as_one_input_or_a_dataset_that_decides_is_a_long_sample(text):
    d = _d(text)
    assert d.primary.id == "long_sample" and d.fixes[0].id == "cap_length"


@pytest.mark.parametrize("text", [
    "LoRA fine-tune of Llama-3-8B in bf16: tried 2 GPUs and 4 GPUs, both run out of memory.",
    "Qwen2-7B LoRA，用2卡/4卡都会爆显存",
    "LoRA fine-tune of a 7B with accelerate: even with 8 GPUs it still OOMs.",
])
def test_more_gpus_that_still_fail_are_the_replica(text):
    d = _d(text)
    assert d.primary.id == "ddp_replica" and d.fixes[0].id == "shard"


# --- found by probing common reports (written without looking at any thread) -----------------------------------------

def test_a_model_loaded_without_a_dtype_is_fp32_and_the_words_outrank_the_phase():
    d = _d("I load the model without torch_dtype and train, and it OOMs on a 24GB card with a 7B.")
    assert d.primary.id == "fp32_training" and d.fixes[0].id == "bf16"


@pytest.mark.parametrize("text, step", [("训练到第 2000 步的时候突然 OOM 了", 2000), ("跑了 300 步之后爆显存", 300)])
def test_a_step_number_in_chinese_with_spaces_is_a_later_step(text, step):
    o = parse(text)
    assert (o.phase, o.step) == ("later_step", step)


@pytest.mark.parametrize("text", ["CUDA OOM in Jupyter after I re-ran the cell that loads the model.",
                                  "在notebook里再次加载模型就爆显存了"])
def test_a_notebook_that_loaded_the_model_again_still_holds_the_first_copy(text):
    d = _d(text)
    assert d.primary.id == "other_process" and d.fixes[0].id == "free_gpu"


@pytest.mark.parametrize("text", [
    "Your notebook tried to allocate more memory than is available. It has restarted.",
    "On Windows the process dies while loading checkpoint shards; the page file is too small.",
])
def test_a_notebooks_restart_or_a_small_page_file_is_host_ram(text):
    assert _d(text).primary.id == "cpu_ram"


@pytest.mark.parametrize("text", [
    "Full fine-tune with gradient checkpointing on: it trains at 16k, but at a 64k context it runs out of CUDA memory.",
    "开启了梯度检查点，上下文长度到128k就爆显存",
])
def test_at_a_long_context_with_checkpointing_on_the_fused_loss_is_the_first_lever(text):
    d = _d(text)
    assert d.primary.id == "batch_or_seq" and d.fixes[0].id == "fused_loss"
    short = _d(text.replace("64k", "4k").replace("128k", "4k"))
    assert short.fixes[0].id != "fused_loss"  # at a short length the activations, not the logits, lead


@pytest.mark.parametrize("text, kind", [("GPUメモリ不足で学習が止まります", "cuda"), ("메모리 부족 오류가 납니다 (RTX 4090)", "cuda"),
                                        ("It errors out with memory errors on my 3090.", "cuda")])
def test_a_shortage_in_japanese_or_korean_or_memory_errors_is_an_oom(text, kind):
    assert parse(text).kind == kind


@pytest.mark.parametrize("text", ["sglang server OOM with --mem-fraction-static 0.9 next to a trainer on the GPU",
                                  "LMDeploy pipeline with cache_max_entry_count 0.8: CUDA out of memory"])
def test_another_engine_that_reserves_its_share_of_the_card_is_the_engines_reservation(text):
    d = _d(text)
    assert d.primary.id == "vllm_memory" and "mem-fraction-static" in d.fixes[0].title


def test_the_backward_of_the_loss_is_not_the_loss_and_step_one_is_the_first():
    d = _d("torch.OutOfMemoryError during loss.backward() on step 1, QLoRA 7B, A10G 24GB, batch 4, seq 4096")
    assert d.primary.id == "batch_or_seq" and d.case.oom.phase == "first_step"
    assert _d("CUDA out of memory in the cross entropy, vocab 256k").primary.id == "fp32_logits"


@pytest.mark.parametrize("text, mib", [
    ("bfc_allocator.cc:275] Ran out of memory trying to allocate 392.00MiB. See logs for memory state.", 392),
    ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1024.00MiB.", 1024),
])
def test_tensorflows_and_jaxs_request_is_read_like_pytorchs(text, mib):
    o = parse(text)
    assert o.kind == "cuda" and o.requested_bytes == mib * 2**20


# --- a second round of probes: the same causes in other words ---------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Under torchrun each of the 8 processes loads the model into RAM; 8 x 30 GB is more than the node has.",
    "The dataset copy per worker needs more memory than the machine has.",
])
def test_ram_as_the_destination_or_more_than_the_machine_has_is_host_ram(text):
    assert _d(text).primary.id == "cpu_ram"


def test_offloading_to_ram_is_not_the_memory_that_ran_out():
    assert _d("ZeRO-3 with the optimizer offloaded to RAM, and the GPU runs out of memory at step 1").primary.id \
        != "cpu_ram"


@pytest.mark.parametrize("text", ["With deepspeed zero2 on 8 x 3090 the 13B LoRA in bf16 does not fit, each card is full.",
                                  "LoRA of a 13B in bf16 with torchrun on 4 x 3090: every GPU is full right away."])
def test_every_card_full_or_a_model_that_does_not_fit_is_read_and_is_the_replica(text):
    d = _d(text)
    assert d.case.oom.kind == "cuda" and d.primary.id == "ddp_replica"


def test_one_gpu_that_works_with_words_between_and_device_map_without_an_equals_sign():
    d = _d("Single GPU with device_map auto works, but accelerate launch with 2 GPUs OOMs")
    assert d.primary.id == "ddp_replica"


@pytest.mark.parametrize("text, cause", [
    ("I forgot to set bf16=True and the 7B fine-tune runs out of memory on an A100 40GB", "fp32_training"),
    ("When I continue training from the saved checkpoint it crashes with OOM, the first run was fine", "resume_state"),
    ("The GPU shows 10GB used by a zombie python process from a crashed run; my new run OOMs", "other_process"),
    ("CUDA out of memory: half the card is held by an old notebook kernel", "other_process"),
])
def test_causes_said_in_other_everyday_words(text, cause):
    assert _d(text).primary.id == cause


def test_memory_of_this_runs_own_process_is_not_another_process():
    d = _d("the GPU memory used by the training process grows to 20GB and then CUDA out of memory")
    assert d.primary.id != "other_process"
