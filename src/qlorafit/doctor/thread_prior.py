"""What labelled public threads say when the rules are only guessing: a word model learned from the OOM thread corpus.

The rules name a cause from evidence. Where they have none and fall back on the batch or the length, they were right
on 245 of 663 public threads they had never seen (assets/doctor_first_sight.json), and on about half of all such
threads the thread's cause was not among the causes they listed at all. There the report's own words are the better
guide, so the doctor asks this model which cause the labelled public threads with such words had, and lets it pick
among every cause, the rules' list counted as evidence (overrules).

    score(cause) = sum over the report's known words of w[word][cause] / sqrt(known words)   (the words)
                 + bias[cause]                                                               (how common it is)
                 + rule[how the rules listed this cause]                                     (listed first / second /
                                                                                              later, and how known)
    P(cause | report) = softmax(score)

The weights are fitted by `benchmarks/fit_doctor.py prior` (a conditional logit, on the studied splits only, each
thread with the causes the rules of its own first measurement gave it, since on a user's report the rules are at first
sight too) and written to assets/doctor_thread_prior.json with the out-of-sample accuracy they were chosen by. Plain
Python: no torch, no numpy.
"""

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import first_sight
from .cause import Action, Cause

MODEL = Path(__file__).resolve().parents[1] / "assets" / "doctor_thread_prior.json"

_WORD = re.compile(r"[a-z][a-z0-9]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+")  # kana, CJK ideographs, hangul

def overrules(cause_id: str | None, strength: str | None) -> bool:
    """Whether the model may overrule the rules' first cause: only where the rules named nothing, or fell back on the
    batch or the length with nothing else to go on (first_sight.bucket 'inferred:fallback'). Evidence stands: where the
    rules had it they beat the words out of sample (proven 81 vs 78 of 107 threads, benchmarks/results/
    doctor-thread-prior-cv.json), and a cause the rules inferred from the report's own words or the phase is kept too
    (overruling those as well gained 1 thread of 572 out of sample, and broke inferences the rules' tests pin)."""
    return cause_id is None or first_sight.bucket(cause_id, strength or "inferred") == "inferred:fallback"


def words(text: str) -> set[str]:
    """The report's words as a set: lower-case Latin words of two letters or more (identifiers split at '_' and '.'),
    and every pair of neighbouring CJK characters (Chinese has no spaces, and a pair like 显存 is a word).

    >>> sorted(words("CUDA out_of_memory: 显存不足"))
    ['cuda', 'memory', 'of', 'out', '不足', '存不', '显存']
    """
    low = text.lower()
    out = set(_WORD.findall(low))
    for run in _CJK.findall(low):
        out.update(run[i:i + 2] for i in range(len(run) - 1))
    return out


def rule_features(causes: list[tuple[str, str | None]], cause: str) -> list[str]:
    """The names of the rule features that fire for one candidate cause, given the rules' (cause id, strength) list in
    order: its place (first, second, later) crossed with how it was known (the batch/length fallback apart)."""
    for i, (c, s) in enumerate(causes):
        if c == cause:
            how = first_sight.bucket(c, s or "inferred").replace("inferred:", "")
            return [("first", "second")[i] + ":" + how if i < 2 else "later:" + how]
    return []


def record() -> tuple[int, int] | None:
    """(right, threads) where the model overruled the rules' guess out of sample (its cross-validation), or None."""
    got = model().get("overruled_out_of_sample")
    return (got[0], got[1]) if got and got[1] else None


@lru_cache(maxsize=1)
def model() -> dict:
    """The fitted weights ({} where the asset is absent: the doctor then keeps the rules' order)."""
    return json.loads(MODEL.read_text()) if MODEL.exists() else {}


def probabilities(text: str, causes: list[tuple[str, str | None]], m: dict | None = None) -> dict[str, float]:
    """P(cause | report) over every cause the model knows, most likely first."""
    m = model() if m is None else m
    if not m:
        return {}
    known = [w for w in words(text) if w in m["words"]]
    norm = 1 / math.sqrt(len(known)) if known else 0.0
    raw = dict(m["bias"])
    for w in known:
        for c, v in zip(m["causes"], m["words"][w]):
            raw[c] += v * norm
    for c in raw:
        raw[c] += sum(m["rules"].get(f, 0.0) for f in rule_features(causes, c))
    top = max(raw.values())
    z = sum(math.exp(v - top) for v in raw.values())
    return {c: math.exp(v - top) / z for c, v in sorted(raw.items(), key=lambda kv: -kv[1])}


@dataclass
class Opinion:
    cause: str
    p: float
    threads: int  # how many labelled threads the model was fitted on


def opinion(text: str, causes: list[Cause]) -> Opinion | None:
    """The model's cause where it may overrule the rules (overrules) and names another. None otherwise."""
    m = model()
    if not m or (causes and not overrules(causes[0].id, causes[0].strength)):
        return None
    p = probabilities(text, [(c.id, c.strength) for c in causes], m)
    best = next(iter(p))
    if causes and best == causes[0].id:
        return None
    return Opinion(best, p[best], m["threads"])


# The cause the model names, where no rule listed it: what it is and the fixes its threads accepted, unsized (no
# evidence sized anything: the savings depend on settings the report did not give). Action ids are fix ids
# (fixes.py / the thread corpus' fix classes).
_A = tuple[str, str, str]  # (action, cost, fix id)
GENERIC: dict[str, tuple[str, str, tuple[_A, ...]]] = {
    "batch_or_seq": ("the batch or the sequence length is too large for the card",
                     "activations grow with batch x length", (
                         ("lower the batch size (raise gradient accumulation to keep the effective batch)",
                          "speed", "batch"),
                         ("cap the length (max_length / cutoff_len / max_seq_length)", "quality: less context",
                          "cap_length"),
                         ("turn gradient checkpointing on", "speed: about a third slower", "checkpointing"))),
    "long_sample": ("a few inputs far longer than the rest",
                    "one long input (text, image, audio or video) makes a step far larger than the others", (
                        ("cap the input: max_length for text, a pixel cap for images, chunks for audio and video, "
                         "or drop the outliers", "quality: less context", "cap_length"),)),
    "ddp_replica": ("every GPU holds a whole copy of the model and its training state",
                    "data parallelism copies the weights, gradients and optimizer states to each GPU", (
                        ("shard them across the GPUs: DeepSpeed ZeRO-3 (or ZeRO-2 with offload) or FSDP; for "
                         "inference device_map='auto' splits the model", "speed: communication", "shard"),)),
    "load_too_big": ("the weights alone do not fit the card", "the model is larger than the GPU memory", (
        ("load a 4-bit or 8-bit build (bitsandbytes, GPTQ/AWQ), or offload layers with device_map='auto' and "
         "max_memory", "quality or speed", "quantize"),
        ("use a smaller model or a larger GPU", "money or quality", "smaller_model"))),
    "no_quant": ("the model is not quantized", "the weights load in 16 or 32 bits unless 4- or 8-bit is asked", (
        ("load the weights in 4-bit (bitsandbytes NF4: load_in_4bit, passed to from_pretrained itself)",
         "quality: slight", "quantize"),)),
    "cpu_ram": ("host (CPU) RAM ran out, not GPU memory", "the process was killed or refused host memory", (
        ("add RAM or swap, or load straight to the GPU shard by shard (low_cpu_mem_usage=True, device_map)",
         "money or none", "more_ram"),)),
    "vllm_memory": ("the inference engine's reservation leaves too little of the card",
                    "vLLM-style engines take gpu_memory_utilization of the card for weights and KV cache", (
                        ("lower gpu_memory_utilization / max_model_len / max_num_seqs (or raise it where the KV "
                         "cache is what is short)", "throughput", "vllm_memory"),)),
    "generation_batch": ("generation's batch and KV cache", "the KV cache grows with batch x beams x length", (
        ("generate in smaller batches, with fewer beams or return sequences, and a lower max_new_tokens",
         "speed", "batch"),)),
    "other_process": ("another process holds the GPU", "this process could only use what was left", (
        ("stop the other process (nvidia-smi lists it) or pick a free GPU", "none", "free_gpu"),)),
    "fp32_training": ("the training runs in fp32", "fp32 weights and activations take twice 16-bit's memory", (
        ("train in bf16 (or fp16 on older GPUs): bf16=True, torch_dtype=torch.bfloat16", "none", "bf16"),)),
    "fp32_logits": ("fp32 logits at a large vocabulary", "the loss upcasts batch x length x vocabulary to fp32", (
        ("compute the loss in chunks: use_liger_kernel=True or a fused cross-entropy", "none", "fused_loss"),)),
    "eval_logits": ("evaluation accumulates logits on the GPU", "every eval batch's logits are kept until the end", (
        ("eval_accumulation_steps, or preprocess_logits_for_metrics returning argmax", "speed: eval",
         "eval_accumulation"),)),
    "eval_batch": ("the evaluation batch is too large", "eval runs its own batch size, often larger than training's", (
        ("lower per_device_eval_batch_size", "speed: slower eval", "eval_batch"),)),
    "save_merge": ("out of memory while saving or merging", "the save or merge materializes the whole model", (
        ("merge layer by layer or in a fresh process with the base in 16-bit on the CPU; save sharded",
         "speed", "merge_layerwise"),)),
    "resume_state": ("a saved state loaded onto the GPU", "torch.load puts tensors back where they were saved", (
        ("load the state on the CPU: torch.load(..., map_location='cpu')", "none", "resume_on_cpu"),)),
    "eager_attention": ("eager attention's seq x seq scores", "eager attention materializes every head's scores", (
        ("load the model with attn_implementation='sdpa' (or flash_attention_2)", "none", "sdpa"),)),
    "bnb_cpu_dispatch": ("the quantized model does not fit the GPU memory that is free",
                         "bitsandbytes refuses modules dispatched to the CPU or disk", (
                             ("free the GPU or use a smaller model; or allow fp32 CPU offload "
                              "(llm_int8_enable_fp32_cpu_offload=True)", "speed", "free_gpu"),)),
    "zero3_generation": ("ZeRO-3 gathers the whole model onto each GPU to generate",
                         "generation under ZeRO-3 gathers every layer's weights", (
                             ("turn the gather off for generation (gather_deepspeed3_params=False / "
                              "ds3_gather_for_generation=False)", "speed", "ds3_gather_off"),)),
    "kbit_prep_fp32": ("prepare_model_for_kbit_training casts a 16-bit model to fp32",
                       "the preparation upcasts every non-quantized weight", (
                           ("skip prepare_model_for_kbit_training on a model that is not quantized; enable "
                            "gradient checkpointing directly", "none", "skip_kbit_prep"),)),
}


def reconsider(text: str, causes: list[Cause]) -> list[Cause]:
    """The causes with the model's opinion first where it may overrule the rules (opinion): a cause the rules listed
    moves ahead, else a cause of GENERIC is added ahead. Either way it is known by 'words' and says so."""
    op = opinion(text, causes)
    if op is None or (op.cause not in GENERIC and all(c.id != op.cause for c in causes)):
        return causes
    why = (f"the report's words: of the {op.threads} labelled public OOM threads the doctor learned from, reports with "
           f"these words most often had this cause (p={op.p:.2f}); the rules had only "
           + (f"a guess ({causes[0].title})" if causes else "nothing") + " to go on")
    listed = next((c for c in causes if c.id == op.cause), None)
    if listed is None:
        title, mech, acts = GENERIC[op.cause]
        listed = Cause(op.cause, title, mech, actions=[Action(t, cost, id=i) for t, cost, i in acts],
                       fix_ids=tuple(i for _, _, i in acts))
    listed.strength = "words"
    listed.evidence.append(why)
    return [listed] + [c for c in causes if c is not listed]
