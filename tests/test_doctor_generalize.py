"""qlorafit doctor (issue 15), the general weaknesses the thread misses showed (tests/fixtures/oom_threads/README.md,
'misses by weakness'): each fix is checked here on synthetic text, never on a thread's own words."""

import pytest

from qlorafit.doctor import Inputs, diagnose
from qlorafit.doctor.foreign import read_posted
from qlorafit.doctor.parse import parse
from qlorafit.doctor.phase import phase_from_words
from qlorafit.doctor.prose import gpus, model_params_b
from qlorafit.doctor.report import confidence
from qlorafit.doctor.script import analyse
from qlorafit.core.sizes import GIB


def _d(text, **kw):
    return diagnose(read_posted(text, **kw))


# --- message forms ------------------------------------------------------------------------------------------------

def test_vllm_kv_cache_error_is_an_oom_of_the_engine_at_load():
    text = ("ValueError: The model's max seq len (16384) is larger than the maximum number of tokens that can be "
            "stored in KV cache (5120). Try increasing `gpu_memory_utilization` or decreasing `max_model_len`.")
    o = parse(text)
    assert (o.kind, o.phase) == ("kv_cache", "load")
    d = _d(text)
    assert d.primary.id == "vllm_memory" and d.fixes[0].id == "vllm_memory"
    assert parse("ValueError: No available memory for the cache blocks.").kind == "kv_cache"


def test_a_cut_oom_message_with_only_its_request_is_still_a_cuda_oom():
    assert parse("Serving a model - Tried to allocate 96.00 MiB. GPU").kind == "cuda"
    assert parse("we tried to allocate more workers").kind is None  # no size: not the message


def test_a_failure_without_oom_words_is_presumed_and_said_to_be_low_confidence():
    d = _d("The validation loop breaks after a number of batches, even with trainer.evaluate() alone.")
    assert d.case.oom.kind == "presumed" and d.case.oom.phase == "eval"
    assert d.primary.id == "eval_logits"
    assert confidence(d)[0] == "low"
    assert _d("Thanks for the great library, how do I set the learning rate?").primary is None  # no failure told
    assert parse("'loss': nan at step 30, and it fails").kind is None  # fp16 overflow is not a presumed OOM


# --- names read from the words ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Setting worker.rollout.gpu_memory_utilization to 0.8 runs out of memory on 4x H100",
    "python -m sglang_like.serve --max-model-len 65536 ... CUDA out of memory",
    "our VLLM engine OOMs at start",
])
def test_vllm_is_recognised_by_its_knobs_and_name_in_any_spelling(text):
    assert _d(text).primary.id == "vllm_memory"


def test_a_kv_cache_in_hf_generate_is_not_vllm():
    d = _d("model.generate() grows the KV cache until CUDA out of memory during generation")
    assert d.primary.id != "vllm_memory"


def test_phase_words_inside_code_names_are_not_phases():
    assert phase_from_words("worker_rollout_cfg.rollout.batch=8 gives OOM")[0] is None
    assert phase_from_words("The image processor generates too many tokens, causing OOM")[0] is None
    assert phase_from_words("OOM during generation with beam search")[0] == "generation"
    assert phase_from_words("OOM in `AutoModelForCausalLM.from_pretrained` for a 300B model")[0] == "load"
    assert phase_from_words("我在合并lora权重时报了显存不足")[0] == "merge"  # CJK next to a name is not one name


def test_fp32_said_in_words_cast_or_cured_by_lower_precision():
    assert _d("Casting the trainable params to float32 causes CUDA out of memory").primary.id == "fp32_training"
    assert _d("OOM when training. Loading the model in lower precision works.").primary.id == "fp32_training"
    assert _d("OOM when training with a batch of 8").primary.id != "fp32_training"


# --- an excerpt says nothing about what it does not show ------------------------------------------------------------

def test_a_script_excerpt_without_the_precision_calls_does_not_prove_fp32():
    excerpt = "def compute_metrics(p):\n    return {'acc': (p.predictions.argmax(-1) == p.label_ids).mean()}\n"
    d = diagnose(Inputs(error_text="CUDA out of memory while evaluating", script=analyse(excerpt)))
    assert d.primary.id == "eval_logits"
    full = excerpt + "args = TrainingArguments(output_dir='o', per_device_train_batch_size=2)\n"
    d = diagnose(Inputs(error_text="CUDA out of memory at step 3 of training", script=analyse(full)))
    assert any(c.id == "fp32_training" for c in d.causes)  # the arguments are shown, bf16 is not in them


# --- the model and the machine, read from the words -------------------------------------------------------------

@pytest.mark.parametrize("text,params", [
    ("Running Falcon 40B on a card", 40), ("qwen2-vl 2b 4-bit", 2), ("微调4B的模型", 4), ("mixtral 8x7B", 56),
    ("Unable to allocate 12 bytes", None), ("pretrained on 1.5B tokens", None), ("load_in_4bit", None),
])
def test_model_size_from_the_words(text, params):
    assert model_params_b(text) == params


@pytest.mark.parametrize("text,count,gib", [
    ("V100-32G * 8", 8, 32), ("4xA100(80GB)", 4, 80), ("A100-80Gx8", 8, 80), ("Number of gpus: 8\nits 192G per GPU", 8, 192),
    ("单卡40G", 1, 40), ("on 2x3090", 2, 24), ("RTX 4060 Ti 16GB", None, 16), ("a T4 instance", None, 15),
    ("8*RTX3080", 8, None),
])
def test_gpus_from_the_words(text, count, gib):
    g = gpus(text)
    assert g.count == count
    assert (round(g.memory_bytes / GIB) if g.memory_bytes else None) == gib


def test_weights_larger_than_the_named_card_are_the_cause():
    d = _d("Serving Falcon 40B on a single L4 - Tried to allocate 64.00 MiB")  # 80 GB of 16-bit weights, 24 GB card
    assert d.primary.id == "load_too_big" and d.primary.strength == "numbers"
    assert d.fixes[0].id == "quantize"
    # a fine-tune that does not say its precision is taken as the QLoRA the doctor assumes: 20 GB fits 24 GB
    assert _d("Fine-tuning Falcon 40B with LoRA on a single L4: CUDA out of memory").primary.id != "load_too_big"
    # several GPUs could hold it: not this cause
    assert _d("Serving Falcon 40B on 4x L4 - Tried to allocate 64.00 MiB").primary.id != "load_too_big"


def test_split_by_one_process_works_but_the_launcher_fails_is_a_replica():
    text = ("Number of gpus: 4. Training a 30B model with torchrun gives CUDA out of memory, while python train.py "
            "with device_map=auto runs fine.")
    assert _d(text).primary.id == "ddp_replica"
    assert _d("Training a 30B model gives CUDA out of memory; with device_map=auto it runs fine.").primary.id \
        != "ddp_replica"  # no multi-process launch named
