"""Causes that come from how the run is launched and shared: a full model replica per GPU under DDP (or ZeRO-1/2),
ZeRO-3 gathering the whole model to generate, and a vLLM engine reserving its share of the card. Read from the
launch command, the accelerate/DeepSpeed config, the script and the traceback."""

import re

from qlorafit.core import catalog

from qlorafit.doctor import evidence as E
from qlorafit.doctor import prose
from qlorafit.doctor.case import Case, gib
from qlorafit.doctor.cause import Action, Cause
from qlorafit.doctor.parse import VLLM_KV_SIZING
from qlorafit.doctor.ruled_out import batch_one_fails

_GATHER = re.compile(r"unwrap_model_for_generation|GatheredParameters|_move_full_model_to_vllm")
_GATHER_WORDS = re.compile(r"gather\w* (?:all |the |whole |full |every )*(?:parameters|params|weights|model)|"
                           r"(?:所有|全部)?(?:参数|权重)\S{0,4}收集|收集\S{0,6}(?:参数|权重)", re.I)
"""The report says the whole model is still gathered ('always gathers all parameters onto one card'), whatever the
ds3_gather_for_generation setting: what ran beats the intent."""
_CARD = r"(?:card|(?:[AHLVT]|RTX ?)\d{2,4}(?: ?ti)?|\d{4}(?: ?ti)?)"
_ONE_NAMED_WORKS = re.compile(r"(?:single|one)[- ]" + _CARD + r"\b[^.\n]{0,30}?\b(?:works|is fine|runs fine)\b|"
                              r"works (?:fine |well )?(?:on|with) (?:a )?(?:single|one) " + _CARD + r"\b", re.I)
"""One card named by its model works ('with a single A800, it works well'): read only where the report also names
several GPUs, since 'SFT works on one A100, but DPO fails' compares stages, not GPU counts."""
_EACH_GPU = re.compile(r"\b(?:mov|materiali[sz]|load|put|plac)\w* (?:the )?(?:whole |full |entire )?model (?:to|on|onto) "
                       r"(?:the |each |every )?(?:devices?|gpus?|cuda|hpus?|ranks?) before "
                       r"(?:wrapping|sharding|it is wrapped|(?:applying |calling )?(?:FSDP2?|fully_shard|sharding|"
                       r"the FSDP wrap))|"  # (every rank puts the whole model on its card first)
                       r"(?:each|every|all) (?:the )?(?:gpus?|cards?|ranks?|process(?:es)?)\b[^.\n]{0,40}"
                       r"(?:load|hold|keep|copy|cop(?:y|ied))|(?:copied|loaded|replicated) (?:\w+ )?(?:times )?on "
                       r"(?:each|every|all)|full (?:copy|replica) (?:of the model )?on each|所有的显卡同时加载|"
                       r"每(?:张|个|块)\s?(?:GPU|卡|显卡)(?!\s?(?:占用|显存)?\s?\d)|(?:each|every|all) (?:the )?(?:of the )?(?:gpus?|cards?) (?:is |are |was |were |gets? |got )?"
                       r"(?:completely )?(?:full|out of memory|OOM\w*)\b|"
                       # more GPUs that do not lower each one's memory: each holds the same copy
                       r"(?:same|more) (?:gpu )?memory (?:per gpu )?(?:as|than) (?:on |with |in )?(?:a |one )?single[- ]?gpu|"
                       r"(?:does ?n[o']t|don'?t|did ?n[o']t|not) (?:reduce|lower|decrease) (?:the )?(?:gpu )?memory (?:per|on each|of each) "
                       r"gpu|比单卡还(?:占|多|大|高)|"
                       # two GPU counts that both fail, or more GPUs that still fail: each GPU holds the same copy
                       r"\d\s?(?:张|块)?(?:卡|GPUs?|cards?)\s?(?:/|、|,|or|and|和|或|跟|to|到)\s?(?:with |on )?\d+\s?(?:张|块)?"
                       r"(?:卡|GPUs?|cards?)[^。.\n]{0,12}?(?:都|both|all|each|every|still)|"
                       r"(?:even|still)\s(?:with|on|using)\s(?:more|\d+)\s(?:gpus|cards)|"
                       r"(?:加|增加|多)(?:了)?(?:卡|GPU|显卡)(?:也|还是|仍然|依然)|(?:多卡|双卡|两张卡)[^，。,.\n]{0,12}(?:和|跟|与)单卡(?:一样|相同)|"
                       # one GPU works, several fail: the launch's per-GPU copy is what does not fit
                       r"(?:single|one)[- ]gpu\b[^.\n]{0,30}?\b(?:works|is fine|runs fine|fits)\b|works (?:fine |well )?(?:on|with) (?:a )?(?:single|one) gpu|"
                       r"单卡(?:可以|能跑|正常|没问题)(?![^。.\n]{0,30}?[吗?？])|"  # (not a question: '单卡能跑得动…吗？')
                       r"only one gpu|each gpu load|没有(?:做)?分布式|no distributed loading|not (?:being )?(?:sharded|distributed)|"
                       # the launch copies the network where it should split it: 'instead of using tensor/pipeline
                       # parallelism it makes copies of the network'
                       r"(?:makes?|making|made|creates?|creating|created) (?:a |full |whole )?(?:copy|copies) of the "
                       r"(?:whole |entire |full )?(?:network|model)\b|"
                       # the report sees the copies: 'the model is replicated across GPUs', 'forces the optimizer state
                       # to be replicated instead of sharded', 'increasing the number of GPUs does not resolve it'
                       r"\b(?:model|weights|parameters|(?:optimizer |training )?states?)\b[^.\n]{0,30}?\breplicated "
                       r"(?:across|on|to|over) (?:the |all |each |every |multiple |several )?(?:gpus|cards|devices|ranks|"
                       r"processes|chips)|\breplicated instead of (?:being )?sharded|"
                       r"(?:increas\w*|add\w*|more) (?:the )?(?:number of )?(?:gpus|cards)\b[^.\n]{0,20}?"
                       r"(?:does ?n[o']t|did ?n[o']t|not) (?:resolve|help|reduce|lower|change|fix)|"
                       # the report weighs the full fine-tune's states on each device: 'per-GPU statics are ~16
                       # bytes/param ... once optimizer state sits on-device'
                       r"\b1[2-8] bytes ?(?:/|per) ?param\w*[^.\n]{0,80}?(?:per[- ]gpu|each gpu|on[- ]device|on the gpu)|"
                       r"(?:per[- ]gpu|each gpu)[^.\n]{0,40}?\b1[2-8] bytes ?(?:/|per) ?param|"
                       r"optimi[sz]er states? (?:sits?|lives?|stays?|resides?|is kept) on[- ](?:the )?(?:device|gpu)", re.I)
_SUMMED = re.compile(r"(?:\btotal(?:l?ing)?|\bin total|\bcombined|\baltogether|共计?|总共|一共|合计)\W{0,3}(?:of\s)?"
                     r"(?:\d+\s?[x*×]\s?)?\d+\s?(?:GB|GiB|G)(?![A-Za-z])", re.I)
"""The report adds up its GPUs' memory ('8 A800 GPUs, totaling 640GB', '共8*11G显存', '四台V100，一共128G'): it expects
the cards to pool their memory, which a launch that copies the model to each of them does not do."""
_SPLIT_WORKS = re.compile(r"device_map\s*[=:]?\s*[\"']?(?:auto|balanced)|\bpython3? \w+\.py\b[^.\n]{0,80}\b(?:works|"
                          r"fine|succeeds)", re.I)
"""The report says the model runs split over the GPUs by one process (device_map='auto'), or under plain python:
the multi-process launch that fails is the one that puts a replica on every GPU."""
_REPLICA_FRAMES = re.compile(r"torch[/\\]nn[/\\]parallel[/\\]data_parallel\.py|\bparallel_apply\(replicas|"
                             r"\bDataParallel\.forward\b|in prepare_model\b[^\n]*\n[^\n]*DistributedDataParallel\(|"
                             r"=\s*(?:torch\.nn\.parallel\.)?DistributedDataParallel\(\s*$", re.M)
"""Frames that copy the whole model to every GPU: torch.nn.DataParallel's forward (it replicates the module onto each
GPU at every step and gathers the outputs on the first), or the OOM raised while DistributedDataParallel wraps the
model (accelerate's prepare_model), where each process's replica and its gradient buckets first land on its GPU."""
_STATES_FRAMES = re.compile(r"zero[/\\]stage_1_and_2\.py\"?,? line \d+, in (?:step|initialize_optimizer_states|__init__|"
                            r"_create_fp32_partitions)|single_partition_of_fp32_groups|fp32_partitioned_groups_flat")
"""Frames where DeepSpeed's ZeRO-1/2 optimizer allocates its fp32 copy of the parameters and Adam's moments: what
fails there is the full fine-tune's optimizer state on each GPU, whatever the batch."""
_OPTIM_STATE_FRAMES = re.compile(r"torch[/\\]optim[/\\]\w+\.py\"?,? line \d+, in _init_group|"
                                 r"state\[[\"']exp_avg(?:_sq)?[\"']\]\s*=\s*torch\.zeros_like|"
                                 # bitsandbytes' 8-bit optimizers create theirs in init_state (get_state_buffer)
                                 r"bitsandbytes[/\\]optim[/\\]\w+\.py\"?,? line \d+, in init_state")
"""Frames where a PyTorch optimizer creates its state at the first step (Adam's exp_avg and exp_avg_sq, torch.zeros_like
of each trained parameter): when every weight is trained that is 8 bytes per parameter in fp32 on top of the weights and
gradients already there, so what fails there is the full fine-tune's optimizer state, whatever the batch. A LoRA's
moments are a few megabytes: with an adapter named these frames prove nothing."""
_GRAD_BUCKET_FRAMES = re.compile(r"zero[/\\]stage_1_and_2\.py\"?,? line \d+, in (?:reduce_ipg_grads|allreduce_bucket|"
                                 r"average_tensor|allreduce_and_copy\w*|reduce_independent_p_g_buckets_and_remove_grads)")
GRAD_BUCKET_MIN_BYTES = 256 * 1024**2
"""ZeRO-1/2 reduces gradients in buckets of up to reduce_bucket_size elements (5e8 by default): a failed request of
this size or more there is a bucket of over a hundred million trained gradients, which no adapter has."""
_MOVE_FRAMES = re.compile(r"line \d+, in _move_model_to_device\b")
"""transformers' Trainer putting the whole model on this process's device (skipped under DeepSpeed and FSDP)."""
_MODULE_TO = re.compile(r"self\.module\.to\(self\.device\)|module\.to\(|\bmodel\.to\(|\.cuda\(\)")


def zero3_generation(c: Case) -> Cause | None:
    """ZeRO-3 shards the weights, but TRL's online trainers gather the whole model onto every GPU to generate
    (unwrap_model_for_generation): a model larger than one GPU cannot generate that way."""
    t = c.inputs.error_text or ""
    frames = _GATHER.search(t)
    gen_under_z3 = c.oom.phase == "generation" and E.zero_stage(c) == 3
    if not (frames or gen_under_z3) or not c.has_oom:
        return None
    ev = [f"the traceback gathers the sharded weights to generate ({frames.group(0)})" if frames else
          "generation under ZeRO-3 (the config's zero stage is 3)"]
    said = _GATHER_WORDS.search(t)
    if c.settings.get("ds3_gather_for_generation") is False and not said:
        return None  # already off: the gather is not what ran out (unless the report says it still gathers)
    if said:
        ev.append(f"the report says '{said.group(0)}'")
    return Cause("zero3_generation", "ZeRO-3 gathers the whole model onto each GPU to generate",
                 "unwrap_model_for_generation undoes the sharding for speed: every GPU briefly holds all the weights",
                 ev, actions=[Action("ds3_gather_for_generation=False (TRL PPO/RLOO/Online DPO/GRPO configs): "
                                     "generate with the weights still sharded (slower), or generate with vLLM",
                                     "speed: slower generation", patch=["+ ds3_gather_for_generation=False"],
                                     id="ds3_gather_off")],
                 strength="proven" if frames else "script", phase="generation")


REPLICA_HEAVY_SHARE = 0.4
"""One replica's weights above this share of a GPU make the replica, not the batch, the cause."""
REPLICA_LIGHT_SHARE = 0.2
"""One replica's weights below this share of a GPU (a model sized from its name, no estimate) rule the replica out."""


def ddp_replica(c: Case) -> Cause | None:
    """Several processes, each holding the whole model: DDP (and ZeRO-1/2, which shard only optimizer state and
    gradients) needs the model to fit on one GPU with room to train; sharding the weights needs ZeRO-3 or FSDP."""
    if not c.has_oom or (E.quantizes(c) and not E.launched(c)):
        return None  # (a quantization job is one process: its GPUs hold layers, not replicas)
    t = c.inputs.error_text or ""
    ws = E.world_size(c)
    says = _EACH_GPU.search(t) or (_SPLIT_WORKS.search(t) if E.launched(c) else None) or \
        (_ONE_NAMED_WORKS.search(t) if max(ws or 1, E.gpu_count(c) or 1) > 1 else None)
    if says and c.oom.phase == "later_step" and not re.search(r"each|every|all|每|所有|bytes|optimi", says.group(0), re.I):
        # 'more GPUs still fail' after the run trained for a while: every GPU held its replica from the first step,
        # and more GPUs do not shrink a sample's activations either, so it proves nothing about the replica
        says = None
    z3_materialized = E.zero_stage(c) == 3 and _MODULE_TO.search(t) and c.oom.phase in ("load", None) \
        and not c.settings.get("zero3_init_flag")
    several = (ws is not None and ws > 1) or E.data_parallel(c)
    ws = ws if ws is not None or not several else E.gpu_count(c)
    states_exceed = _full_states_exceed_one_card(c)
    # (the request's own evidence before the arithmetic: a flat fp32 copy shows what ran out)
    exceeds = _exceeds_one_card(c) or _flat_fp32_request(c) or states_exceed or _second_copy_request(c)
    need = None if exceeds else _sharded_states_need(c)
    # sharded, and even each GPU's share of the full fine-tune's states is larger than the GPU (or would be, on fewer
    # GPUs than the states need, when the count is not shown)
    at_one = None if exceeds else _full_states_at_batch_one(c)
    # a full fine-tune said ('全参sft，8*40G爆显存了') on several GPUs that ran out, with no model size or launch to
    # weigh: each GPU holds the weights, gradients and Adam state (16 bytes per parameter) unless ZeRO-3/FSDP shard them
    full_several = None if exceeds or at_one or need else _full_tune_on_several(c)
    frames = _REPLICA_FRAMES.search(t) if c.oom.kind == "cuda" else None
    # Trainer moves the whole model to each process's GPU unless DeepSpeed/FSDP shard it: with several processes, an
    # OOM there is each one's replica (with one process it is the weights alone: load_too_big)
    moved = _MOVE_FRAMES.search(t) if c.oom.kind == "cuda" and (ws or 1) > 1 and not E.sharded(c) else None
    frames = frames or moved
    states = _STATES_FRAMES.search(t) if c.oom.kind == "cuda" and not E.sharded(c) else None
    # Adam creating its moments at the first step: the full fine-tune's states, sharded or not (sharded, each GPU's
    # share of them is still too large)
    moments = _OPTIM_STATE_FRAMES.search(t) if c.oom.kind == "cuda" and not states and \
        not E.adapter_named(c) and not E.weights_quantized(c) else None
    bucket = _GRAD_BUCKET_FRAMES.search(t) if c.oom.kind == "cuda" and not states and not moments and \
        (c.oom.requested_bytes or 0) >= GRAD_BUCKET_MIN_BYTES and not E.adapter_named(c) else None
    states = states or moments or bucket
    moments_sharded = moments if _shards_states(c) else None
    short_sharded = _shards_states(c) and any((states_exceed, need, at_one, moments_sharded))
    # the GPUs' memory added up by a report that trains several of them with 16-bit weights: the pooled memory it
    # counts on is each GPU's own (4-bit replicas are small enough that the batch is the likelier reading)
    # (a dataset named is a run that trains: inference split over the cards by a device map does pool them)
    summed = _SUMMED.search(t) if (several or (E.gpu_count(c) or 1) > 1) and not E.weights_quantized(c) and \
        re.search(E.TRAINING_WORDS.pattern + r"|\bdatasets?\b|数据集", E.text(c), re.I) else None
    if z3_materialized or frames or states or (says and (several or c.oom.distributed or (E.gpu_count(c) or 1) > 1
                                     or re.search(r"gpu|card|卡|copies of the|device|shard", says.group(0), re.I))):
        strength = "proven"
    elif several and E.replicates(c) and c.oom.phase in ("load", None, "training", "first_step", "generation"):
        # the launch shows replicas; they are the cause when the weights are a large share of each GPU, which needs
        # the model's size (or a failure while loading the weights): LoRA on an unknown model under ZeRO-2 is more
        # often the batch than the replica
        ignored_offload = bool(c.settings.get("offload_param")) and E.zero_stage(c) in (0, 1, 2)
        named, card = E.named_weights(c), E.card_bytes(c)
        heavy = c.oom.phase == "load" or ignored_offload or (
            named is not None and card is not None and named[0] > REPLICA_HEAVY_SHARE * card)
        light = not heavy and not exceeds and named is not None and card is not None and \
            named[0] < REPLICA_LIGHT_SHARE * card
        if light and c.est is None:
            return None  # the model named is a small share of the card: the copy on each GPU is not what ran out
        # an unknown model leaves nothing to weigh the replica with: still the likeliest reading of a replicating
        # launch, but inferred, so causes the numbers or the traceback show rank above it
        strength = "script" if heavy or (c.shape is not None and (c.est is None or c.budget_bytes is None)) \
            else "inferred"
    elif at_one or need:
        strength = "inferred"  # no sizes to weigh (the batch of 1 is the whole argument), or no GPU count to divide by
    elif full_several:
        strength = "inferred"  # a full fine-tune said, on several GPUs, and nothing else known: its states per GPU
    elif summed:
        strength = "inferred"  # the words show the expectation, not the copy: no sizes weigh it
    elif exceeds:
        # a full fine-tune only assumed (no method named, a batch of 1 still fails): the arithmetic holds, its premise
        # is a default, so the cause is inferred
        strength = "numbers" if E.full_tune(c) or not E.full_by_default(c) else "inferred"
    else:
        return None
    if E.sharded(c) and not z3_materialized and not frames and not states and not _four_bit_unsharded(c) and \
            not (says and strength == "proven") and not short_sharded:
        return None  # sharded, unless the report says each GPU still holds the whole model (what ran beats the intent)
    if strength != "proven" and E.lora_16bit(c) and E.zero_stage(c) is None and c.oom.phase != "generation":
        strength = "inferred"  # a 16-bit LoRA outside DeepSpeed: 4-bit loading (no_quant) is the nearer lever
    ev = []
    if z3_materialized:
        ev.append("ZeRO-3 is configured but the whole model is moved to each GPU before it is sharded "
                  "(module.to(device) in the traceback): the model was built outside zero.Init")
    if moved:
        ev.append(f"the OOM is raised as each of the {ws} processes moves the whole model onto its GPU "
                  f"(Trainer._move_model_to_device): a replica per GPU")
    elif frames:
        ev.append("the traceback is in torch.nn.DataParallel, which copies the whole model onto every GPU at each "
                  "step" if "DistributedDataParallel" not in frames.group(0) else
                  "the OOM is raised while DistributedDataParallel wraps the model: each process puts a whole replica "
                  "and its gradient buckets on its GPU")
    if moments:
        ev.append("the OOM is raised as the optimizer creates Adam's moments at its first step (exp_avg, "
                  "torch.zeros_like of each trained weight): with every weight trained they take 8 bytes per parameter "
                  "on top of the weights and gradients, and "
                  + (f"the run printed '{E.trains_most_printed(c)}'" if E.trains_most_printed(c) else
                     "no adapter is named")
                  + (" (sharded, this GPU's share of them)" if moments_sharded else ""))
    elif bucket:
        ev.append(f"the OOM is in ZeRO-1/2's gradient reduction, flattening a bucket of {gib(c.oom.requested_bytes)} "
                  f"of gradients: hundreds of millions of trained weights, a full fine-tune's (no adapter is named), "
                  f"whose gradients and optimizer share stay on each GPU beside the whole 16-bit weights")
    elif states:
        ev.append("the OOM is in DeepSpeed's ZeRO-1/2 optimizer as it allocates the fp32 copy of the parameters "
                  "(and Adam's moments): the full fine-tune's optimizer state does not fit each GPU")
    if c.settings.get("unfreezes_all"):
        ev.append(f"the script sets every parameter to train after the adapter is applied "
                  f"({c.settings['unfreezes_all']}): the base weights train beside the adapter, with their gradients "
                  f"and Adam state; delete that loop (PEFT already trains the adapter, and "
                  f"model.enable_input_require_grads() is the fix for 'does not require grad' under checkpointing)")
    if says:
        ev.append(f"the report says '{says.group(0)}'")
    if summed and not says:
        ev.append(f"the report adds up the GPUs' memory ('{summed.group(0)}'), but each GPU holds its own copy of "
                  f"the model and its states: the memory does not pool")
    if several and E.data_parallel(c):
        ev.append(f"one plain python process sees {ws} GPUs: the transformers Trainer wraps the model in "
                  f"torch.nn.DataParallel, a whole copy of it on every GPU")
    elif several:
        ev.append(f"{ws} processes" + (f", ZeRO stage {E.zero_stage(c)}" if E.zero_stage(c) is not None else
                                       ", sharded (FSDP)" if E.sharded(c) else ", no ZeRO-3 or FSDP in the config"))
    if c.settings.get("offload_param") and E.zero_stage(c) in (0, 1, 2):
        ev.append(f"offload_param is set, but ZeRO stage {E.zero_stage(c)} ignores it: parameter offload needs "
                  f"ZeRO-3, so every GPU still holds all the weights")
    if exceeds or at_one or need or full_several:
        ev.append(exceeds or at_one or need or full_several)
    if _four_bit_unsharded(c):
        ev.append("ZeRO-3 and FSDP shard bitsandbytes 4-bit weights only when they are stored in the compute dtype "
                  "(bnb_4bit_quant_storage=torch.bfloat16); without it every GPU keeps the whole 4-bit model")
    if c.est and c.budget_bytes and not short_sharded:
        ev.append(f"estimate: one replica's weights take {gib(c.est.phases['load'])} of {gib(c.budget_bytes)} per GPU")
    # (a report that sees the copies on its devices is about several of them, whatever count it gives)
    one = max(ws or 1, E.gpu_count(c) or 1) == 1 and not (says and re.search(r"replicat|copies", says.group(0), re.I))
    return Cause("ddp_replica", "even sharded, each GPU's share of the full fine-tune's states is too large"
                 if short_sharded else "the full fine-tune's states do not fit one GPU" if one else
                 "every GPU holds a full copy of the model",
                 "ZeRO-3/FSDP divide the 16 bytes per parameter by the GPU count; too few GPUs leave each too large a "
                 "share" if short_sharded else
                 "weights, gradients and Adam state of every parameter stay on the one GPU" if one else
                 "DDP (and ZeRO-1/2) replicate the weights on each GPU: more GPUs add no room for the model itself",
                 ev, ("quantize",),
                 [Action("the states are already sharded: spread them over more GPUs, offload them to the CPU (FSDP "
                         "fsdp_offload_params; ZeRO-3 offload_optimizer and offload_param), use an 8-bit optimizer, or "
                         "train a LoRA (QLoRA) instead of every weight", "speed: offload traffic, or more GPUs",
                         id="shard")] if short_sharded else
                 [Action("shard the weights: DeepSpeed ZeRO-3 with zero3_init (HF builds the model inside zero.Init) "
                         "or FSDP (QLoRA: bnb_4bit_quant_storage=torch.bfloat16, fsdp_cpu_ram_efficient_loading); for "
                         "a single process, device_map='auto' splits the layers over the GPUs; for inference, vLLM "
                         "with tensor_parallel_size; on one GPU, offload the optimizer state to the CPU (DeepSpeed "
                         "offload_optimizer, OpenRLHF --adam_offload)", "speed: sharding traffic", id="shard")],
                 strength=strength, phase="load" if z3_materialized or (
                     frames and ("DistributedDataParallel" in frames.group(0) or moved)) else None)


def _four_bit_unsharded(c: Case) -> bool:
    """bitsandbytes 4-bit weights under ZeRO-3 or FSDP without bnb_4bit_quant_storage: the sharding leaves them whole
    on every GPU (they are uint8 tensors the wrapper does not flatten with the rest)."""
    t = E.text(c) + " " + " ".join(str(k) for k in c.settings)
    return E.sharded(c) and E.weights_quantized(c) and not re.search(r"quant_storage", t)


def _exceeds_one_card(c: Case) -> str | None:
    """Several GPUs, and the weights of the named model (as loaded) larger than one of them, while each process holds
    them whole (no ZeRO-3/FSDP, or 4-bit weights they cannot shard): the evidence line, or None."""
    # (an evaluation too: a harness or trainer evaluating runs a process per GPU, each with the whole model)
    if c.oom.phase not in (None, "load", "training", "first_step", "later_step", "generation", "eval"):
        return None
    n = max(E.world_size(c) or 1, E.gpu_count(c) or 1)
    w, card = E.named_weights(c), E.card_bytes(c)
    if n < 2 or w is None or card is None or w[0] <= card:
        return None
    if not E.TRAINING_WORDS.search(E.text(c) + " " + E.settings_text(c)) and not E.launched(c) and E.world_size(c) is None \
            and not re.search(r"\bpredict\w*|\bevaluat\w*|\beval\b", E.text(c), re.I):
        # inference (chat, serving) on several GPUs from one process splits the layers (device_map, tensor parallel);
        # a trainer's prediction or evaluation runs a process per GPU, each with the whole model
        return None
    if E.sharded(c) and not _four_bit_unsharded(c):
        return None
    tp = c.settings.get("tensor_parallel_size")
    if isinstance(tp, int) and tp > 1:
        return None  # model parallelism splits the weights over the GPUs: no GPU holds them whole
    return (f"the weights alone are {gib(w[0])} ({w[1]}), more than one GPU's {gib(card)}, and each of the {n} GPUs "
            f"holds them whole")


FULL_TUNE_BYTES = {"weights": 2, "grads": 2, "optimizer": 12}
"""Bytes per parameter of a mixed-precision full fine-tune with Adam: 16-bit weights and gradients, fp32 master
weights and two moments. ZeRO-1 divides the optimizer's share by the GPU count, ZeRO-2 the gradients' too, ZeRO-3
everything (the ZeRO paper's accounting)."""


LARGEST_CARD_BYTES = max(catalog.get_gpu(n).memory_bytes for n in catalog.gpu_names())
"""The memory of the largest card in the catalogue: with no card named, what does not fit it fits none."""


def _shards_states(c: Case) -> bool:
    """ZeRO-3 or FSDP divides this run's weights and states over the GPUs (not bitsandbytes 4-bit weights stored
    without bnb_4bit_quant_storage, which stay whole on every GPU)."""
    return E.sharded(c) and not _four_bit_unsharded(c)


def _states_offloaded(c: Case) -> bool:
    """The optimizer state (or, sharded, the parameters too) lives in host RAM: ZeRO-1/2 ignore parameter offload
    (ddp_replica says so), so it counts only where the states are sharded."""
    return bool(c.settings.get("offload_optimizer") or (c.settings.get("offload_param") and _shards_states(c)))


def _full_states_exceed_one_card(c: Case) -> str | None:
    """A full fine-tune on several GPUs whose per-GPU share of weights, gradients and Adam state (by ZeRO stage; DDP
    keeps all of it on each) is larger than one GPU: the evidence line, or None."""
    if not (E.full_tune(c) or E.full_by_default(c)) or \
            c.oom.phase not in (None, "load", "training", "first_step", "later_step"):
        return None
    if _MIXED_KEEPS_FP32.search(E.text(c)):
        return None  # Lightning's mixed precision names where the 16 bytes come from (fp32 weights): fp32_training
    n = max(E.world_size(c) or 1, E.gpu_count(c) or 1)
    named, card = E.model_params(c), E.card_bytes(c)
    if named is None and E.full_tune(c):
        # several sizes named ('a 7B ... compressed to 5.7B'): the smallest is a lower bound on the states, so a
        # verdict that they exceed the card holds for whichever model it was
        low = prose.smallest_model_params_b(c.inputs.error_text or "")
        named = (low, "the report (the smallest size it names)") if low is not None else None
    z = E.zero_stage(c) or 0
    if card is None:
        # no card named: the largest card made is the bound; states above it fit no single GPU at all (a 14B full
        # fine-tune's 224 GB), whichever card ran out
        card = LARGEST_CARD_BYTES
    sharded = _shards_states(c)
    if named is None or _states_offloaded(c) or (sharded and (n < 2 or c.oom.phase == "later_step")):
        # offloaded states leave the GPU; sharded ones need the GPU count to divide by, and a sharded run that trained
        # for a while held its share of the states from the first step
        return None
    w, g, o = (FULL_TUNE_BYTES[k] * named[0] * 1e9 for k in ("weights", "grads", "optimizer"))
    # ZeRO-3 and FSDP divide all three by the GPU count, ZeRO-2 the gradients and optimizer, ZeRO-1 the optimizer
    per_gpu = (w + g + o) / n if sharded else w + g + o if z == 0 else w + g + o / n if z == 1 else w + (g + o) / n
    if per_gpu <= card:
        return None
    if not E.full_tune(c):
        named = (named[0], f"{named[1]}; no method named and a batch of 1 still fails, so a full fine-tune, every "
                           f"trainer's default, is assumed")
    if n == 1:  # one GPU: no stage shards anything, the optimizer state has to leave the GPU
        return (f"a full fine-tune of a {named[0]:g}B model (named in {named[1]}) keeps 16 bytes per parameter: "
                f"{gib(int(per_gpu))} of weights, gradients and Adam state on one GPU of {gib(card)}")
    launch = f"ZeRO-{z}" if E.zero_stage(c) is not None else "FSDP" if sharded else "a replicating launch (DDP)"
    return (f"a full fine-tune of a {named[0]:g}B model (named in {named[1]}) keeps 16 bytes per parameter; under "
            f"{launch} on {n} GPUs each holds {gib(int(per_gpu))} of weights, gradients and Adam state, more than "
            f"its {gib(card)}")


_MIXED_KEEPS_FP32 = re.compile(r"(?<![\w-])(?:bf)?16-mixed\b")
"""Lightning/Fabric's mixed precision ('bf16-mixed'): fp32 weights, gradients and optimizer state under autocast;
'bf16-true' halves them, so the precision is the lever the report names, not the sharding."""


FLAT_FP32_TOLERANCE = 0.12
"""How near a single request has to be to 4 bytes per parameter to be read as an fp32 copy of the whole model (the
parameter count comes from the name: '7B' for a 6.7B model is 4 % off)."""


def _flat_fp32_request(c: Case) -> str | None:
    """One request of about 4 bytes for every parameter of the named model: an fp32 copy of all the weights at once,
    which only a full fine-tune's optimizer allocates (fp32 master weights or an Adam moment, flattened by ZeRO-1/2,
    ColossalAI or FSDP's flat parameters). The evidence line, or None."""
    req = c.oom.requested_bytes
    if not req or c.oom.kind != "cuda" or E.lora_16bit(c) or E.weights_quantized(c) or \
            c.oom.phase_evidence in _LOAD_RESERVES:
        # (from_pretrained reserving the model it loads is the weights' own size: another model's, or fp32 weights)
        return None
    # every size the report names ('BaiChuan-7B/13B' names two): the request says which one ran
    named = E.model_params(c)
    sizes = ([named] if named else []) + [(float(b), "the report") for b in re.findall(
        r"(?<![\w.])(\d{1,3}(?:\.\d)?)\s?[bB](?![A-Za-z])", c.inputs.error_text or "")]
    named = next(((b, w) for b, w in sizes if abs(req - 4 * b * 1e9) <= FLAT_FP32_TOLERANCE * 4 * b * 1e9), None)
    if named is None:
        return None
    return (f"the failed request of {gib(req)} is 4 bytes for each of the {named[0]:g}B parameters (named in "
            f"{named[1]}): an fp32 copy of the whole model at once, which a full fine-tune's optimizer allocates (fp32 "
            f"master weights or an Adam moment, flattened)")


_LOAD_RESERVES = ("_load_pretrained_model", "caching_allocator_warmup", "from_pretrained")
"""Frames of from_pretrained reserving the memory of the model it loads: a request there is that model's weights."""


SECOND_COPY_TOLERANCE = 0.03
"""How close a failed request must be to everything already allocated to be a second copy of it."""
SECOND_COPY_MIN_SHARE = 0.3
"""...and the share of the card that allocation must fill: a small model's copy is no evidence of its states."""


def _second_copy_request(c: Case) -> str | None:
    """A full fine-tune whose failed request is the size of everything already allocated (11.63 GiB asked with 11.63
    GiB allocated on a 24 GiB card), when that is a large share of the card: before the first step what is allocated
    is the weights, and a second tensor of all their size at once is their gradients or the optimizer's flat copy,
    which only training every weight asks for. The evidence line, or None."""
    o = c.oom
    req, held, card = o.requested_bytes, o.allocated_bytes, o.total_bytes or E.card_bytes(c)
    if not (req and held and card) or o.kind != "cuda" or not E.full_tune(c) or E.weights_quantized(c) or \
            abs(req - held) > SECOND_COPY_TOLERANCE * held or held < SECOND_COPY_MIN_SHARE * card or \
            o.phase not in (None, "training", "first_step"):
        return None
    return (f"the failed request of {gib(req)} is the size of everything already allocated ({gib(held)}) in a full "
            f"fine-tune: a second copy of all the weights at once (their gradients, or the optimizer's flat copy), "
            f"which does not fit beside them on the {gib(card)} GPU")


SMALL_NODE_GPUS = 2
"""GPUs assumed at least where a sharded launch does not show its count: states that need more than this many GPUs
of the card to fit sharded are named as a likely cause, inferred."""


def _sharded_states_need(c: Case) -> str | None:
    """A full fine-tune sharded by ZeRO-3/FSDP (no offload) whose GPU count is not shown: the GPUs of this card its
    16 bytes per parameter need, when that is more than SMALL_NODE_GPUS. The evidence line, or None."""
    if not E.full_tune(c) or not _shards_states(c) or max(E.world_size(c) or 1, E.gpu_count(c) or 1) > 1 or \
            _states_offloaded(c) or c.oom.phase not in (None, "load", "training", "first_step"):
        return None
    named, card = E.model_params(c), E.card_bytes(c) or c.oom.total_bytes
    if named is None or card is None:
        return None
    states = sum(FULL_TUNE_BYTES.values()) * named[0] * 1e9
    need = -(-int(states) // int(card))
    if need <= SMALL_NODE_GPUS:
        return None
    return (f"a full fine-tune of a {named[0]:g}B model (named in {named[1]}) keeps 16 bytes per parameter, "
            f"{gib(int(states))} in all: sharded over GPUs of {gib(card)}, it needs {need} or more of them before the "
            f"batch's activations (the launch's GPU count is not shown)")


def _full_tune_on_several(c: Case) -> str | None:
    """A full fine-tune said in words or config on several GPUs, in a phase where its states are held: the evidence
    line, or None. (A LoRA named, or states sharded or offloaded, is not this.)"""
    n = E.gpu_count(c) or 1
    if not E.full_tune(c) or n < 2 or c.oom.phase not in (None, "load", "training", "first_step") or \
            E.sharded(c) or _states_offloaded(c) or E.model_params(c) is not None:
        return None  # (a size known is weighed by _full_states_exceed_one_card, which can find that they fit)
    return (f"a full fine-tune on {n} GPUs with no model size to weigh it: unless ZeRO-3/FSDP shard them, each GPU "
            f"holds the weights, gradients and Adam state, 16 bytes per parameter (a 7B's 112 GB)")


def _full_states_at_batch_one(c: Case) -> str | None:
    """A full fine-tune (said) that still fails at a batch of 1, with no sizes to weigh: at one sample the activations
    are the smallest they get, and what is left is 16 bytes per parameter of weights, gradients and Adam state. The
    evidence line, or None."""
    if not E.full_tune(c) or c.oom.phase not in (None, "load", "training", "first_step"):
        return None
    m = batch_one_fails(c.inputs.error_text or "")
    said = f"'{m.group(0)}'" if m else "per_device_train_batch_size=1" \
        if c.settings.get("per_device_train_batch_size") == 1 else None
    if said is None:
        return None
    if E.sharded(c):  # ZeRO-3/FSDP divide the states by the GPU count: with too few GPUs each share is still too large
        return (f"a sharded full fine-tune that still fails at a batch of 1 ({said}): what is left is each GPU's share "
                f"of the 16 bytes per parameter of weights, gradients and Adam state, too large for this many GPUs")
    return (f"a full fine-tune that still fails at a batch of 1 ({said}): what is left is the 16 bytes per "
            f"parameter of weights, gradients and Adam state on each GPU")


VLLM_DEFAULT_UTILIZATION = 0.9
"""vLLM's default gpu_memory_utilization: the share of each GPU the engine takes for weights and KV cache."""


def _vllm_weights_exceed_card(c: Case, util: float) -> Cause | None:
    """The weights of the model vLLM serves, split over tensor_parallel_size GPUs (1 unless set), larger than the
    engine's share of one GPU: no utilization or max_model_len setting can make them fit, so the reservation is not
    the cause. The lever is tensor parallelism over the GPUs the machine has, else a 4-bit build."""
    w, card = E.named_weights(c), c.oom.total_bytes or E.card_bytes(c)
    if w is None or card is None or E.offloads_layers(c):
        return None  # llama.cpp's family keeps the layers that do not fit in host RAM: the share on the card failed
    tp = c.settings.get("tensor_parallel_size")
    tp = tp if isinstance(tp, int) and tp > 0 else 1
    if w[0] / tp <= util * card:
        return None
    gpus = E.gpu_count(c) or 1
    ev = [f"the weights alone are {gib(w[0])} ({w[1]})" + (f", {gib(int(w[0] / tp))} per GPU over "
                                                          f"tensor_parallel_size={tp}" if tp > 1 else
                                                          ", all on one GPU (tensor_parallel_size not set)")
          + f"; vLLM's share of a {gib(card)} GPU is {gib(int(util * card))}"]
    acts = []
    if gpus > tp:
        ev.append(f"the report names {gpus} GPUs")
        acts.append(Action(f"split the model over the GPUs: --tensor-parallel-size {gpus} (vLLM; LLM("
                           f"tensor_parallel_size={gpus}))", "none: the GPUs are there",
                           patch=[f"+ --tensor-parallel-size {gpus}"], id="shard"))
    acts.append(Action("serve a 4-bit (AWQ/GPTQ/bnb) build of the model, or use a larger GPU", "quality: slight",
                       id="quantize"))
    return Cause("load_too_big", "the model's weights do not fit the GPUs vLLM puts them on",
                 "vLLM loads the weights into gpu_memory_utilization x each GPU before any KV cache; without tensor "
                 "parallelism one GPU holds them all", ev, ("quantize",), acts, strength="numbers", phase="load")


def _engine_on_one_of_several(c: Case) -> Cause | None:
    """vLLM failing as it starts on a machine with several GPUs, with no tensor parallelism and no utilization set: the
    engine put the whole model on one of them, and splitting it is the first lever, before any budget setting. Not
    vLLM's own KV-cache refusal (the weights loaded; its message names the cache budget)."""
    gpus = E.gpu_count(c) or 1
    tp = c.settings.get("tensor_parallel_size")
    if c.oom.phase != "load" or gpus < 2 or (isinstance(tp, int) and tp > 1) or c.oom.kind == "kv_cache" or \
            c.settings.get("vllm_gpu_memory_utilization") is not None or VLLM_KV_SIZING.search(c.inputs.error_text or ""):
        return None
    return Cause("load_too_big", "the engine starts with the whole model on one GPU of several",
                 "vLLM uses one GPU unless tensor_parallel_size says more: the others sit idle while the first runs out",
                 [f"the report names {gpus} GPUs and nothing sets tensor_parallel_size; the engine fails as it starts"],
                 ("quantize",),
                 [Action(f"split the model over the GPUs: --tensor-parallel-size {gpus} (vLLM; LLM(tensor_parallel_size="
                         f"{gpus}))", "none: the GPUs are there", patch=[f"+ --tensor-parallel-size {gpus}"], id="shard")],
                 strength="inferred", phase="load")


_ENGINE_WEIGHTS_LOAD = re.compile(r"exllamav2[/\\]\w+\.py\W{1,3},? line \d+, in (?:load|load_gen)\b")
"""ExLlamaV2 loading the model's weights module by module (model.load, load_gen, a module's load): its weights have to
fit the GPUs it is given, and the cache comes after them, so a failure there is the weights' size."""


def vllm_memory(c: Case) -> Cause | None:
    """A vLLM engine reserves gpu_memory_utilization of the card up front for weights and KV cache; co-located with
    training (GRPO/online RL) the trainer gets only the rest, and the engine itself OOMs when max_model_len is long."""
    if not c.has_oom or not E.uses_vllm(c) or c.oom.phase in ("merge", "save"):
        return None  # a merge or a save is its own cause (save_merge), whatever engine the model is bound for
    if E.quantizes(c) and not re.search(r"vllm", E.text(c), re.I):
        return None  # an engine's checkpoint conversion or quantization loads the 16-bit model: no engine runs yet
    util = c.settings.get("vllm_gpu_memory_utilization")
    total = c.oom.total_bytes or c.budget_bytes
    if c.shape is not None and total and isinstance(util, (int, float)):
        weights = 2 * c.shape.total_params()
        if weights > util * total:  # the 16-bit weights alone exceed the engine's share: the model does not fit
            return Cause("load_too_big", "the model's 16-bit weights do not fit the card",
                         "vLLM loads the weights into gpu_memory_utilization x the card before any KV cache",
                         [f"{c.shape.name} in 16-bit is {gib(weights)}; gpu_memory_utilization={util} of "
                          f"{gib(total)} is {gib(int(util * total))}"], ("quantize",),
                         [Action("serve a 4-bit (AWQ/GPTQ/bnb) build of the model, or use a larger GPU", "quality: "
                                 "slight", id="quantize")], strength="numbers", phase="load")
    too_big = _vllm_weights_exceed_card(c, util if isinstance(util, (int, float)) else VLLM_DEFAULT_UTILIZATION)
    if too_big:
        return too_big
    unsplit = _engine_on_one_of_several(c)
    if unsplit:
        return unsplit
    if E.PREFILL_BATCH.search(c.inputs.error_text or "") and c.oom.kind != "kv_cache":
        return None  # the engine ran, and its prefill of several requests at once is what ran out (generation_batch)
    if _ENGINE_WEIGHTS_LOAD.search(c.inputs.error_text or "") and not re.search(r"Cache\b|cache\.py",
                                                                            c.inputs.error_text or ""):
        return None  # the engine failed placing the weights, before any cache: their size is the cause (load_too_big)
    other = E.reserving_engine(c) if not re.search(r"vllm", E.text(c), re.I) else None
    ev = [f"an inference engine that reserves its share of the card at start runs in this job ('{other}')" if other
          else "a vLLM engine runs in this job (vllm in the traceback, or use_vllm / gpu_memory_utilization set)"]
    if isinstance(util, (int, float)):
        ev.append(f"gpu_memory_utilization={util}" + (f": the engine reserves {gib(int(util * total))} of "
                                                      f"{gib(total)}" if total else ""))
    elif other:
        # not vLLM: its own knobs size its share (a context's KV cache, the layers it puts on the card)
        ev.append(f"'{other}' takes its share of the card as it starts: the weights it places there and the KV cache "
                  f"of its whole context")
    else:
        ev.append("gpu_memory_utilization not set: vLLM's default reserves 0.9 of the card (TRL's older GRPO default "
                  "too)")
    saves = int(0.2 * total) if total and not isinstance(util, (int, float)) else None
    t = E.text(c)
    # served alone (no training in the job), the engine takes its share, profiles and sizes the KV cache at start:
    # an OOM nothing else places happened while it loaded
    # an engine other than vLLM named with no training (its KV buffers are allocated as it starts), or vLLM's
    # start-up profile_run in the report, is the same start-up
    served = (re.search(r"\bserv(?:e|es|ing)\b|api_server|openai\.entrypoints|部署|\bprofile_run\b", t, re.I) or other) \
        and not E.TRAINING_WORDS.search(t)
    return Cause("vllm_memory", f"the inference engine's reservation leaves too little of the card" if other else
                 "the vLLM engine's reservation leaves too little of the card",
                 f"'{other}' allocates the weights it puts on the card and its whole context's KV cache as it starts; "
                 f"what it needs beyond the card is the layers or the context it was given" if other else
                 "vLLM takes gpu_memory_utilization x the card at start for weights and KV cache; training (or a "
                 "long max_model_len) needs what is left", ev,
                 actions=[Action("lower vllm_gpu_memory_utilization (e.g. 0.3-0.5 when co-located with training; "
                                 "SGLang --mem-fraction-static, LMDeploy cache_max_entry_count, TensorRT-LLM "
                                 "kv_cache_free_gpu_mem_fraction are the same share; LightLLM's max_total_token_num "
                                 "and TGI's --max-total-tokens size the KV cache in tokens; Ollama's num_ctx, "
                                 "llama.cpp's --ctx-size and ExLlama's --length size it by the context, and ExLlama's "
                                 "--gpu_split must leave room for it; llama.cpp's and koboldcpp's --n-gpu-layers put "
                                 "fewer layers on the card) and cap max_model_len to "
                                 "the longest prompt + completion", "speed: smaller KV cache",
                                 saves, "0.2 of the card per 0.2 of utilization" if saves else "",
                                 ["+ vllm_gpu_memory_utilization=0.4", "+ vllm_max_model_len=4096"], id="vllm_memory")],
                 strength="proven" if re.search(r"vllm", c.inputs.error_text or "", re.I) or other else "script",
                 phase="load" if served else None)
