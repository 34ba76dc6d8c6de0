"""The diagnosis rules: small functions over a Case, in the order that decides the primary cause.

Each rule returns a Cause or None. The first that matches is the primary cause; every match is listed. A Cause
carries its evidence (numbers quoted from the parsed text, the run's record or the estimator, never made up), the
estimator fixes that address it (by id, see fixes.py) and the actions no estimate can size (stop the other process,
change the allocator), with the bytes they free where the text says how many.
"""

import re

from qlorafit.core import options as O
from qlorafit.doctor import evidence as E
from qlorafit.doctor.case import Case, gib
from qlorafit.doctor.cause import STRENGTH, Action, Cause
from qlorafit.doctor.parse import BATCH_CAPPED, PINNED_ON_WSL, SHARED_MEMORY_BOARD, VLLM_KV_SIZING
from qlorafit.doctor.phase import CHAT_HISTORY, GATHERED_STATE, progress_bars
from qlorafit.doctor.prose import quantization_refused, quantization_stated
from qlorafit.doctor.rules_setup import EVAL_BATCH_WORDS, TRAINS_OR_EPOCHS, eval_batch_evidence
from qlorafit.doctor.ruled_out import STATIC_CAUSES, batch_helps, batch_one_fails, ruled_out, some_data_fails
from qlorafit.core.sizes import GIB, MIB

OTHER_PROCESS_MIN_BYTES = int(1.5 * GIB)
"""GPU memory outside this process's PyTorch pool beyond this is another process (a CUDA context is ~0.3-1 GiB)."""
OTHER_SMALL_SHARE = 0.2
OWN_POOL_MOST = 0.7
"""Less than this share of the card held outside, while this process's own pool is at least OWN_POOL_MOST of it: a
desktop's display or the CUDA contexts, not the cause (what this process holds is)."""
OTHER_HOLDS_MOST = 0.5
OWN_POOL_SMALL = 0.25
"""Memory held outside this process of at least half the card, while this process's own pool is at most a quarter of
it: the card was taken before this process could use it (another process, or another framework in the same process
such as TensorFlow taking the whole card at import), known from the numbers alone."""
FRAGMENTATION_SHARE = 0.2
"""Fragmentation needs reserved-but-unallocated memory that is this share of the card or more AND larger than the
failed request: a few hundred MiB of free fragments on a 24 GiB card next to a 2 GiB request is not the cause. (0.1
until session 11: on the 330 labelled threads fragmentation was never the accepted cause, and the two it was named
first for, at 14 and 15 % of the card, were the batch and another process; the expandable-segments fix stays a lever
of the batch.)"""
LOGITS_SHARE = 0.2
"""The logits and loss above this share of the estimated peak make them the cause."""
FAR_OVER_CARDS = 1.5
"""A cause known from the estimate alone (fp32 logits, 16-bit weights) whose removal still leaves the step above this
many cards is not the cause: the batch and length are. A margin, not 1: removing a term also shrinks the allocator's
share with it."""


def _other_bytes(c: Case) -> int | None:
    """GPU memory in use that is not this process's: total - free - ours."""
    o = c.oom
    if o.total_bytes is None or o.free_bytes is None or o.reserved_bytes is None:
        return None
    ours = max(o.process_bytes or 0, o.reserved_bytes)
    if o.process_bytes is None and o.other_processes:
        # 'Process N has X' where N may be us seen from a container: the entry closest to our pool is ours
        pid, mine = min(o.other_processes.items(), key=lambda kv: abs(kv[1] - o.reserved_bytes))
        if abs(mine - o.reserved_bytes) <= max(OTHER_PROCESS_MIN_BYTES, 0.1 * o.total_bytes):
            ours = max(ours, mine)
    return o.total_bytes - o.free_bytes - ours


def fp16_overflow(c: Case) -> Cause | None:
    signs = c.oom.fp16_signs + [f"nan_loss event at step {e.get('step')}" for e in
                                (c.inputs.run.kind("nan_loss") if c.inputs.run else [])]
    if not signs or c.has_oom:
        return None
    return Cause("fp16_overflow", "fp16 overflow, not a memory problem",
                 "the numbers overflowed the fp16 range; no allocation failed, so memory fixes will not help",
                 [f"the log says: {s!r}" for s in signs[:4]], ("bf16",),
                 [Action("train in bf16 (same memory; needs an Ampere or newer GPU), else fp32 LoRA weights and a "
                         "lower learning rate", "none on bf16 GPUs", patch=["- fp16=True", "+ bf16=True, fp16=False"],
                         id="bf16")], strength="proven")


def script_breaks(c: Case) -> Cause | None:
    broken = [f for f in c.findings if f.breaks_run]
    if not broken or c.has_oom or c.oom.fp16_signs:
        return None
    return Cause(broken[0].id, "the script stops before training on current transformers/TRL",
                 "arguments that current libraries reject raise a TypeError before any memory is used",
                 [f"line {f.line}: {f.reason}" for f in broken],
                 actions=[Action(f.fix, "none", patch=f.patch, id="fix_script_args") for f in broken])


_LOADER_WORKER = re.compile(r"DataLoader worker \(pids?[^)]*\) (?:is killed|exited unexpectedly)[^.\n]*|"
                            r"dataloader worker[^.\n]{0,20}(?:killed|died|exited)", re.I)


def cpu_ram(c: Case) -> Cause | None:
    """Host RAM, with the fix for the phase it ran out in: the load, tokenization, saving or merging."""
    if c.oom.kind != "cpu" or E.forward_on_cpu(c):  # a model run on the CPU: its batch, not the RAM (batch_or_seq)
        return None
    o = c.oom
    presumed = o.form == "presumed"  # no out-of-memory said: the report names the host's memory, or a load stalls
    board = SHARED_MEMORY_BOARD.search(E.text(c))
    ev = [f"host allocation failed: tried to allocate {gib(o.requested_bytes)} ({o.requested_bytes:,} bytes)"
          if o.requested_bytes else "the report names the host's memory, with no out-of-memory error quoted"
          if presumed else f"the machine's RAM ran out: on a {board.group(0)} the GPU has no memory of its own, it "
          f"shares the host's" if board else "the host ran out of RAM (the kernel or the notebook killed the process)"]
    if o.phase:
        ev.append(f"phase: {o.phase.replace('_', ' ')} ({o.phase_evidence})")
    pinned = PINNED_ON_WSL.search(E.text(c)) is not None and not o.requested_bytes
    if pinned:  # (not a kill: the out-of-memory is the pinned budget's)
        ev[0] = ("pinned host memory is asked for (pin_memory: true) under WSL2, whose CUDA pins only a little host "
                 "memory: set pin_memory to false in the offload configuration")
    ram = Action("add RAM or swap (or a larger notebook runtime), or close other programs", "money or speed",
                 id="more_ram")
    low = Action("load straight to the GPU, shard by shard: device_map={'': 0} with low_cpu_mem_usage=True and a 16-bit "
                 "torch_dtype; with several processes, let only rank 0 read the weights (fsdp_cpu_ram_efficient_loading)",
                 "none", id="low_cpu_mem")
    merge = Action("merge layer by layer (`qlorafit merge`, or smaller output shards) instead of materializing the "
                   "16-bit model in RAM at once", "speed: slower merge", id="merge_layerwise")
    workers = Action("tokenize with fewer processes (num_proc / preprocessing_num_workers / dataset_num_proc), or "
                     "stream the dataset: every worker holds its own copy", "speed: slower preprocessing",
                     id="fewer_workers")
    loader = _LOADER_WORKER.search(c.inputs.error_text or "")
    if loader:  # the process the kernel killed is a DataLoader worker: the workers' copies are what filled the RAM
        ev.append(f"the log says '{loader.group(0)}'")
        return Cause("cpu_ram", "host (CPU) RAM ran out in the DataLoader's worker processes, not GPU memory",
                     "every DataLoader worker is a process with its own copy of the dataset and its prefetched batches",
                     ev, actions=[Action("lower the DataLoader's num_workers (dataloader_num_workers; 0 loads in the "
                                         "main process) or prefetch_factor", "speed: slower data loading",
                                         id="fewer_workers"), ram], strength="proven")
    # several processes each reading the whole checkpoint into RAM (a launch, ZeRO or FSDP, or a training run on
    # several GPUs): loading it once, straight to the GPUs, is the lever; one process that reads it once needs the RAM.
    # (Until session 15 a load not shown streamed put low_cpu_mem first: on the studied threads it was the accepted fix
    # on 7 of the single-process loads it led, more RAM on 7 others, while with several processes it led right.)
    several = (E.world_size(c) or 1) > 1 or E.zero_stage(c) is not None or E.sharded(c) or \
        ((E.gpu_count(c) or 1) > 1 and E.TRAINING_WORDS.search(E.text(c)) is not None) or \
        re.search(r"\b(?:every|each) (?:process|rank)\b|\bfsdp\b|每个进程", E.text(c), re.I) is not None
    streamed = re.search(r"Loading checkpoint shards", c.inputs.error_text or "") is not None
    # the traceback in from_pretrained building or filling the whole model in RAM (no shard-by-shard load shown):
    # low_cpu_mem_usage and a 16-bit dtype are what it lacks, whatever the RAM
    built = not streamed and re.search(r"in from_pretrained\b|in _load_pretrained_model\b|model = cls\(config",
                                       c.inputs.error_text or "") is not None
    # more RAM already there or already tried ('the machine has 2TB', 'even after I increased swap'): not the lever
    plenty = re.search(r"\b\d+(?:\.\d+)?\s?T(?:i?B)?\b|increas\w* (?:the )?swap|add\w* (?:more )?swap|more swap|"
                       r"even (?:with|after)[^.\n]{0,30}\b(?:RAM|swap|memory)\b", E.text(c), re.I) is not None
    order = {"tokenization": [workers, ram], "merge": [merge, ram], "save": [ram, merge],
             "load": [low, ram] if several or built or plenty else [ram, low]}.get(o.phase, [ram, low])
    if o.phase == "load" and streamed and not several:
        ev.append("the weights were already read shard by shard ('Loading checkpoint shards'): the model at this "
                  "precision needs more RAM than the machine has")
    return Cause("cpu_ram", "host (CPU) RAM ran out, not GPU memory",
                 "the process's RAM is exhausted: weights read or merged in 16/32-bit, a checkpoint written from RAM, "
                 "or tokenizer workers each holding a copy", ev, actions=order,
                 strength="inferred" if presumed or pinned or _engine_on_shared_memory(c) else "proven")


def _engine_on_shared_memory(c: Case) -> bool:
    """An inference engine that reserves its share of the memory at start (vLLM's gpu_memory_utilization, ...) on a
    board whose GPU shares the host RAM: the kill is the engine's reservation taking the machine's memory, so the
    engine's budget (vllm_memory) is the lever and the kill only how it showed."""
    return bool(SHARED_MEMORY_BOARD.search(E.text(c))) and E.uses_vllm(c)


_OTHER_WORDS = re.compile(r"another (?:process|program|job|jupyter|notebook|kernel|instance)\b[^.\n]{0,40}(?:us(?:es|ing)|"
                          r"holds?|holding|occup\w*|runs?|running|loaded|on the (?:same )?gpu)|(?:other|another) "
                          r"process(?:es)? (?:is |are )?(?:using|holding|occupying)|zombie (?:\w+ )?process|(?:used|held|occupied|taken|"
                          r"allocated) by (?:an? |the |some )?(?:other|another|different|old|previous|zombie|dead|crashed|"
                          r"stale|orphan\w*|leftover|earlier)\b[^.\n]{0,20}?(?:process|program|job|kernel|notebook|run)\b|"
                          r"nvidia-smi shows "
                          r"[^.\n]{0,40}(?:process|used|in use)|(?:被)?(?:其他|其它|别的)(?:的)?(?:进程|程序)占用|"
                          # the same notebook loaded the model again: the first copy is still on the GPU
                          r"(?:re-?ran|re-?run(?:ning)?|ran again|run again|executed again|re-?executed) (?:the |that |my )?"
                          r"(?:cell|notebook cell)|(?:load\w*|the model)[^.\n]{0,20}(?:a second time|twice)|重新运行|再次加载|"
                          r"加载了两次|"
                          # the same script ran once and fails when started again: the first run's memory is still held
                          r"\b(?:ran|runs?|worked|works) (?:properly |fine |well |ok |okay |successfully |correctly )?(?:the )?"
                          r"first time\b[^\n]{0,80}?\b(?:again|second time|re-?ran|re-?run)\b|"
                          r"第一次(?:可以|能|正常){0,2}(?:运行|跑)[^。\n]{0,30}?(?:第二次|再次|再)(?:运行|跑)|"
                          # the first run's memory not given back, and the next run fails: 'after the audio is
                          # generated the GPU memory is not released; generating again runs out'
                          r"(?:显存|内存|memory)\S{0,4}(?:并|都|也)?(?:未|没有|没|不)(?:被)?释放[^\n]{0,40}?(?:再次|再|第二次|又)|"
                          r"\bmemory (?:is|was|isn'?t|wasn'?t|does ?n[o']t get|never gets?|is never|was never) "
                          r"(?:not )?(?:released|freed)\b[^\n]{0,60}?\b(?:again|second|"
                          r"next (?:run|call|generation|time))\b|"
                          # earlier work that never gives the card back: 'ONNX Runtime has the bad habit of not
                          # releasing GPU memory', so each finished session's memory stays held (said, not asked:
                          # 'or is something not releasing GPU memory?' is a guess)
                          r"\b(?:not|never|does ?n[o']t|won'?t|fails? to) releas\w* (?:the |its |any |their )?"
                          r"(?:gpu|cuda|device|video) memory\b(?![^\n.?]*\?)|"
                          # the finished job's memory that the next one needs: 'release cuda cache when finished job'
                          # ('Fix/clear memory after metric computation': a scoring model left on the card)
                          r"\b(?:releas|clear|free|empty)\w* (?:the )?(?:cuda |gpu |torch )?(?:cache|memory) (?:when|after|"
                          r"once|between) (?:the |a |each |every )?(?:finished |previous |earlier |first )?(?:job|run|task|"
                          r"generation|request|inference|transcription|(?:metrics? |scoring )?computation|scoring)|"
                          # a server or notebook left running beside the run: 'fails if `ilab serve` is still running'
                          r"\b(?:serve|server|serving|service|notebook|kernel|jupyter|ollama|webui|process|job)\W{0,2} "
                          r"(?:is |was |are |were )?still running|"
                          # one card of several already full or busy: 'My GPU1 memory is full but GPU2 can ok'
                          r"\bGPU\s?\d+(?:'s)? (?:memory )?is (?:already )?(?:full|busy|occupied|in use)\b|"
                          r"\b(?:first|one|the other) GPU is (?:already )?(?:full|busy|occupied|in use|running other)\b",
                          re.I)
"""The report says something else holds the GPU: another process, notebook or job, a zombie, nvidia-smi's list, the
same notebook that loaded the model again (the first copy stays referenced), a script that ran once and fails when run
again, a server left running beside it, or one of its cards already full or busy."""


_LIBRARY_HINT = re.compile(r"Please check whether there is any other process using (?:GPU|NPU|XPU)", re.I)
"""A framework's own advice printed with every OOM (PaddlePaddle's), not the reporter's account of another process."""


_WORKER_COPIES = re.compile(r"\b(?:each|every|one|another|a second|the second|the spawned|spawned|new|extra) (?:backend |"
                            r"gunicorn |uvicorn |api |server |serving |model )?workers?\b[^.\n]{0,60}?(?:\d+(?:\.\d+)?\s?(?:GB|G|GiB)\b|"
                            r"\bVRAM\b|GPU memory|its own (?:copy|model))|\bworkers?\b[^.\n]{0,30}?\b(?:each|all)\b[^.\n]{0,30}?"
                            r"(?:load|hold|take)s? (?:its|their|a|the) (?:own )?(?:copy|model)", re.I)
"""Several workers of one service each holding their own copy of the model on the same GPU ('one backend worker will
take around 7GB of GPU's VRAM ... the spawned worker need another 7GB'): the memory is held by the other workers."""


def _other_process_words(c: Case) -> Cause | None:
    from qlorafit.doctor.rules_setup import ONE_GPU_LOAD

    t = _LIBRARY_HINT.sub("", c.inputs.error_text or "")
    m = _OTHER_WORDS.search(t)
    workers = _WORKER_COPIES.search(t) if m is None else None
    if (m is None and workers is None) or not c.has_oom or ONE_GPU_LOAD.search(t):
        return None  # (a state loaded again onto GPU 0 by the other ranks is the resume's, not another program's)
    if workers:
        return Cause("other_process", "the service's other workers hold the GPU",
                     "each worker process loads its own copy of the model on the same card: the next one finds only "
                     "what the others left", [f"the report says '{workers.group(0)}'"],
                     actions=[Action("run one worker per GPU (the server's workers setting, e.g. MAX_WORKERS / "
                                     "--workers 1) and scale with one process per card", "throughput per card",
                                     id="fewer_workers")])
    return Cause("other_process", "another process holds the GPU", "this process could only use what was left",
                 [f"the report says '{m.group(0)}'"],
                 actions=[Action("stop the other process (nvidia-smi lists it; restart the notebook kernel that "
                                 "loaded a model earlier), or pick a free GPU with CUDA_VISIBLE_DEVICES", "none",
                                 id="free_gpu")])


FREE_UNUSED_FACTOR = 4
"""The card reports this many times the request free (and at least 1 GiB) when the allocation failed: the memory was
there, so this process could not use it (something else took it at that moment, or a cap or a MIG slice limits it)."""


def _free_but_refused(c: Case) -> Cause | None:
    """The message says the card had far more free than was asked for: no size of this run explains the failure."""
    o = c.oom
    if o.free_bytes is None or o.requested_bytes is None or c.oom.kind != "cuda" or \
            o.free_bytes < max(FREE_UNUSED_FACTOR * o.requested_bytes, GIB) or \
            re.search(r"memory fraction|per_process_memory_fraction|\bMIG\b", c.inputs.error_text or "", re.I):
        return None
    return Cause("other_process", "the card had the memory free, yet this process could not get it",
                 "another process (a second launch, a notebook kernel, a stuck run) was taking memory at that moment, "
                 "or the driver held it: a reboot or a free card clears it",
                 [_numbers(c), f"free {gib(o.free_bytes)} when {gib(o.requested_bytes)} was asked for: the run's own "
                               f"size did not run out"],
                 actions=[Action("check nvidia-smi for other processes and stop them (or restart the machine), or pick "
                                 "a free GPU with CUDA_VISIBLE_DEVICES", "none", id="free_gpu")])


def other_process(c: Case) -> Cause | None:
    other = _other_bytes(c)
    if other is None:
        return _other_process_words(c) or _free_but_refused(c)
    o = c.oom
    if other < max(OTHER_PROCESS_MIN_BYTES, 0.1 * (o.total_bytes or 0)):
        return _free_but_refused(c)  # the numbers show nothing held outside this process: they outweigh the words
    if not o.other_processes and other < OTHER_SMALL_SHARE * o.total_bytes and \
            o.reserved_bytes >= OWN_POOL_MOST * o.total_bytes and not _other_process_words(c):
        return None  # this process holds most of the card: the little outside it (a display, the contexts) is no cause
    ev = [f"GPU {o.gpu_index}: total {gib(o.total_bytes)}, free {gib(o.free_bytes)}, so {gib(o.total_bytes - o.free_bytes)} "
          f"in use; this process's PyTorch pool is {gib(o.reserved_bytes)}"
          + (f" (the process reports {gib(o.process_bytes)})" if o.process_bytes is not None else ""),
          f"{gib(other)} is held outside it: another process (a notebook kernel, an inference server, a zombie run)"]
    for pid, b in o.other_processes.items():
        ev.append(f"the error lists process {pid} with {gib(b)}")
    # the message itself names another process holding a share of the card: the error proves it, unless the weights
    # alone are larger than the whole card (then freeing it would not be enough). From the totals alone (total - free
    # - this process) it stays a guess: a display, another rank or the context may be what holds it
    named = any(b >= max(OTHER_PROCESS_MIN_BYTES, 0.1 * (o.total_bytes or 0)) for b in o.other_processes.values()) \
        and not _weights_exceed_card(c)
    # most of the card held outside a small pool of this process's own (22.5 of 23.7 GiB, with 1.2 GiB in the pool):
    # no display, context or batch of this process explains it, the numbers show the card taken from it
    most = other >= OTHER_HOLDS_MOST * o.total_bytes and max(o.reserved_bytes, o.process_bytes or 0) <= \
        OWN_POOL_SMALL * o.total_bytes
    return Cause("other_process", "another process holds the GPU", "this process could only use what was left", ev,
                 actions=[Action("stop the other process (nvidia-smi lists it; restart the notebook kernel that "
                                 "loaded a model earlier), or pick a free GPU with CUDA_VISIBLE_DEVICES", "none",
                                 other, "parsed: total - free - this process", id="free_gpu")],
                 strength="proven" if named else "numbers" if most else "inferred")


def save_merge(c: Case) -> Cause | None:
    if c.oom.phase not in ("save", "merge"):
        return None
    what = "merging the adapter" if c.oom.phase == "merge" else "saving a checkpoint"
    # the merge's base loaded in float32 ('dtype=torch.float32' on the failing line or in the script): twice the
    # memory a 16-bit merge needs, and the first lever
    fp32 = _FP32_LOAD.search(E.text(c)) if c.oom.phase == "merge" else None
    bf16 = [Action("load the base in 16-bit for the merge (dtype=torch.bfloat16): a float32 base takes twice the "
                   "memory, and the merged weights are saved in 16-bit anyway", "none",
                   patch=["- dtype=torch.float32", "+ dtype=torch.bfloat16"], id="bf16")] if fp32 else []
    return Cause("save_merge", f"out of memory while {what}",
                 "merging dequantizes the base model to 16-bit (about 4x its 4-bit size) on top of the training state; "
                 "saving gathers the weights (and optimizer state) before writing them",
                 [f"phase: {c.oom.phase} ({c.oom.phase_evidence})", _numbers(c)]
                 + ([f"the merge loads the base in float32 ('{fp32.group(0)}')"] if fp32 else []),
                 actions=bf16 + [Action("save only the adapter during training; merge afterwards in a fresh process, "
                                 "layer by layer (`qlorafit merge`) or on the CPU", "speed: a separate merge step",
                                 id="merge_separately"),
                          Action("free the trainer before merging: del trainer, optimizer; gc.collect(); "
                                 "torch.cuda.empty_cache()", "none", id="free_trainer")],
                 strength=_phase_strength(c))


_FP32_LOAD = re.compile(r"(?:torch_)?dtype\s*=\s*(?:torch\.)?float32|(?:torch_)?dtype\s*=\s*[\"']float32[\"']")
"""A load asking for float32 weights by its dtype argument."""


def _phase_strength(c: Case) -> str:
    """Frames and log markers prove a phase; the user's words only suggest it."""
    return "inferred" if c.oom.phase_evidence.startswith("the report says") else "proven"


_KEPT_ON_GPU = re.compile(r"(?:predictions|outputs|results|embeddings)\b[^.\n]{0,20}?\b(?:are |is |get |were )?"
                          r"(?:saved|kept|stored|held|left|collected)\b[^.\n]{0,12}?\b(?:in|on) (?:the )?"
                          r"(?:GPU|device|cuda)\b|"
                          # 'Encoder was accumulating tensors on the GPU'
                          r"\baccumulat\w* (?:the |all )?(?:tensors|outputs|embeddings|predictions|results) on (?:the )?"
                          r"(?:GPU|device|cuda)\b", re.I)
"""The report says every input's outputs stay on the GPU ('all the predictions are saved in GPU'): they accumulate with
the number of inputs, at an inference loop as at an evaluation."""
_GRAPH_KEPT = re.compile(r"\b(?:add\w*|wrap\w*|us(?:e|es|ed|ing)|without|missing|forg[eo]t\w*|no)\b[^.\n]{0,40}?"
                         r"(?:torch\.)?(?:no_grad|inference_mode)\b|\bcomputation(?:al)? graph\b", re.I)
"""The report says the model ran without torch.no_grad() / inference_mode(), or names the computation graph, at an
inference ('Add torch.no_grad() for vastly less memory usage', 'wrapping the model in torch.no_grad() to disable the
computation graph'): each forward keeps its graph, and with it every activation, as long as its outputs live."""
_ACCUMULATION = re.compile(r"nested_concat|torch_pad_and_concatenate|_pad_and_concatenate|preds_host|compute_metrics|"
                           # the predictions kept on the GPU, said in words: 'aggregates the predictions on the GPU'
                           r"(?:aggregat|concatenat|accumulat|gather)\w*[^.\n]{0,30}\b(?:predictions|outputs)\b|"
                           r"\b(?:predictions|outputs)\b[^.\n]{0,30}\b(?:aggregated|concatenated|accumulated)\b|"
                           r"accumulat\w* (?:all )?(?:the )?(?:eval )?(?:logits|predictions)|logits (?:are|get) "
                           r"accumulated|\blogits\b|" + _KEPT_ON_GPU.pattern, re.I)


def _eval_batches_done(c: Case) -> str | None:
    """In an evaluation, the last progress bar before the failure ran to its end (3125/3125): every batch went through
    the model, so what ran out afterwards holds all of their outputs at once (the logits or embeddings gathered for the
    metric), not one batch. The evidence line, or None."""
    t = c.inputs.error_text or ""
    at = re.search(r"out of memory|OutOfMemoryError|Tried to allocate", t, re.I)
    bars = [b for b in progress_bars(t[:at.start()] if at else t) if b.phase not in ("load", "tokenization")]
    if c.oom.phase != "eval" or not bars or bars[-1].total < 2 or bars[-1].n < bars[-1].total:
        return None
    return (f"the evaluation's batches all ran (progress bar {bars[-1].n}/{bars[-1].total}) before it failed: what "
            f"ran out holds every batch's outputs at once")


def eval_logits(c: Case) -> Cause | None:
    """Evaluation keeps every batch's logits (tokens x vocab) until the loop ends when metrics need them."""
    from qlorafit.doctor.rules_setup import eval_batch_evidence, gather_frames, similarity_block

    graph = _GRAPH_KEPT.search(c.inputs.error_text or "") if c.has_oom and not E.TRAINING_WORDS.search(E.text(c)) \
        else None
    kept_on_gpu = (_KEPT_ON_GPU.search(E.text(c)) or E.MANY_INPUTS.search(E.text(c)) or graph) if c.has_oom else None
    if c.oom.phase != "eval" and not (kept_on_gpu and c.oom.phase in (None, "generation")):
        return None
    if similarity_block(c) and not gather_frames(c):
        return None  # the failing frame scores embeddings against each other: the eval's block, not gathered logits
    if E.REFERENCE_PASS.search(c.inputs.error_text or ""):
        return None  # TRL's reference pass keeps each batch's log-probs (a number per sequence), never its logits
    script_metrics = bool(c.settings.get("compute_metrics")) and not c.settings.get("preprocess_logits") \
        and not c.settings.get("label_head") or bool(c.settings.get("keeps_logits"))
    # (a classifier's logits are a few values per sample: kept for its metrics, they never fill a card)
    words = _ACCUMULATION.search(E.text(c))
    many = E.MANY_INPUTS.search(E.text(c))
    done = _eval_batches_done(c)
    if not (script_metrics or words or done or many or graph):
        if eval_batch_evidence(c) or (c.inputs.script is not None and not c.settings.get("compute_metrics")):
            return None  # no metrics, nothing accumulates, or the forward failed before any gathering: the eval
            # batch is the cause (rules_setup.eval_batch)
    ev = [f"phase: evaluation ({c.oom.phase_evidence})" if c.oom.phase == "eval" else
          f"phase: {c.oom.phase or 'unknown'}, over many inputs", _numbers(c)]
    if graph:
        ev.append(f"the report says '{graph.group(0)}': run with autograd on, every forward keeps its graph and the "
                  f"activations behind it for as long as its outputs live")
    if c.settings.get("keeps_logits"):
        ev.append(f"the script keeps every batch's outputs on the GPU ({c.settings['keeps_logits']}): logits are "
                  f"tokens x vocab values per batch, and an output kept with its autograd history keeps the "
                  f"activations behind it, until the loop ends")
    elif script_metrics:
        ev.append("the script passes compute_metrics without preprocess_logits_for_metrics: every eval batch's "
                  "logits are kept")
    elif words:
        ev.append(f"the text names the accumulation: '{words.group(0)}'")
    elif many:
        ev.append(f"the report says '{many.group(0)}': what one call returns for all of them stays on the GPU until "
                  f"it ends")
    elif done:
        ev.append(done)
    else:
        ev.append("no script to tell: with compute_metrics (the usual case for an eval-only OOM) every eval batch's "
                  "logits are kept; paste the Trainer call to be sure")
    if c.shape is not None:
        ev.append(f"each eval token's logits are {c.shape.vocab_size:,} values; the Trainer concatenates every "
                  f"batch's logits until the loop ends unless eval_accumulation_steps is set")
    return Cause("eval_logits", "evaluation accumulates logits" if c.oom.phase == "eval" else
                 "every input's outputs stay on the GPU",
                 "with compute_metrics the Trainer keeps all eval logits (tokens x vocab) on the GPU" if c.oom.phase ==
                 "eval" else "outputs kept on the GPU add up with the number of inputs until the card is full",
                 [e for e in ev if e], ("loss",),
                 [Action("move each output off the GPU as it is produced (out.cpu(), or write it to disk) instead of "
                         "keeping every input's result on the card", "none", patch=["+ results[key] = out.cpu()"],
                         id="eval_accumulation")] if c.oom.phase != "eval" else
                 [Action("preprocess_logits_for_metrics returning argmax (keeps token ids, not logits), or "
                         "eval_accumulation_steps (moves them to the CPU every N steps), or prediction_loss_only=True",
                         "none", patch=["+ preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1)",
                                        "+ eval_accumulation_steps=4"], id="eval_accumulation"),
                  Action("lower per_device_eval_batch_size", "speed: slower eval", id="eval_batch")],
                 strength="script" if script_metrics else ("proven" if gather_frames(c) else
                                                           "numbers" if done else "inferred"))


def fragmentation(c: Case) -> Cause | None:
    o = c.oom
    free_frag = o.unallocated_reserved_bytes if o.unallocated_reserved_bytes is not None else o.cache_bytes
    run_frag = c.inputs.run.peak("mem_fragmentation") if c.inputs.run else None
    ev = []
    if free_frag is not None and o.requested_bytes and o.total_bytes and free_frag > o.requested_bytes and \
            free_frag >= FRAGMENTATION_SHARE * o.total_bytes:  # a large share of the card, and more than was asked
        ev.append(f"{gib(free_frag)} reserved by PyTorch but unallocated, against a request of {gib(o.requested_bytes)}:"
                  f" the space exists but not in one piece")
    elif o.cache_bytes is not None and o.allocated_bytes and o.cache_bytes > o.allocated_bytes:
        ev.append(f"axolotl's log: {gib(o.allocated_bytes)} allocated but {gib(o.cache_bytes)} more held in the cache")
        free_frag = o.cache_bytes
    elif run_frag and c.inputs.run.peak("mem_allocated") and run_frag > 0.25 * c.inputs.run.peak("mem_allocated"):
        ev.append(f"metrics.jsonl: up to {gib(run_frag)} reserved - allocated, against {gib(c.inputs.run.peak('mem_allocated'))} allocated")
        free_frag = run_frag
    if not ev:
        return None
    return Cause("fragmentation", "allocator fragmentation",
                 "variable-length batches leave the cache in pieces too small for the next large tensor", ev,
                 ("batch",),
                 [Action("set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True before starting Python (qlorafit does "
                         "by default)", "none", free_frag, "parsed: reserved but unallocated",
                         ["+ export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"], id="expandable_segments"),
                  Action("pad batches to a few fixed lengths (group_by_length, or pad_to_multiple_of=64)", "none",
                         id="fixed_lengths")],
                 # generating, the KV cache grows by a step's keys and values each token (and beam search reorders
                 # it): the pieces it frees behind are the cache's own churn, so the batch x length that sizes the
                 # cache is the cause the numbers show, and fragmentation only a reading of them
                 strength="inferred" if o.phase == "generation" else "numbers")


NO_QUANT_HEAVY_SHARE = 0.5
"""The 16-bit weights of a LoRA fine-tune above this share of one GPU make the missing 4-bit loading the cause: the
rest of the card is too little for the activations, and 4-bit loading gives back three quarters of the weights."""


NO_METHOD_HEAVY_SHARE = 0.7
"""The 16-bit weights of a one-GPU fine-tune that names no method above this share of the GPU make the missing 4-bit
loading the cause; higher than a LoRA's share, since without a method named the batch is the likelier reading of a
merely large model."""


_ZERO_OFFLOAD = re.compile(r"zero[-_ ]?offload|cpu_offload|offload_optimizer", re.I)


def _lora_weights_heavy(c: Case) -> str | None:
    """A LoRA fine-tune (or, on one GPU, a fine-tune that names no method) that loads 16-bit weights, sized from the
    model the settings or the report name, filling more than NO_QUANT_HEAVY_SHARE (NO_METHOD_HEAVY_SHARE) of one GPU:
    the evidence line, or None. Used where no estimate sizes the model."""
    if c.est is not None or c.oom.phase not in (None, "load", "training", "first_step", "later_step"):
        return None
    lora = E.lora_16bit(c)
    # a fine-tune that names no method, on one GPU: LoRA or full, 16-bit weights that fill most of the card leave too
    # little for training either way, and 4-bit loading (QLoRA) is the lever that gives the most back
    unnamed = not lora and not E.adapter_named(c) and not E.full_tune(c) and not E.full_by_default(c) and \
        not E.weights_quantized(c) and E.TRAINING_WORDS.search(E.text(c)) is not None and \
        max(E.world_size(c) or 1, E.gpu_count(c) or 1) == 1 and c.oom.phase != "later_step" and \
        not _ZERO_OFFLOAD.search(E.text(c) + " " + E.settings_text(c))
    # (not after steps ran: the weights had fitted, so whatever they were loaded as is not what ran out; nor under
    # DeepSpeed's ZeRO-Offload, a full fine-tune's tool: its optimizer state is already off the card)
    if not (lora or unnamed) or _infers_with_adapter(c):
        return None
    w, card = E.named_weights(c), E.card_bytes(c)
    if w is None or card is None:
        return None
    n = max(E.world_size(c) or 1, E.gpu_count(c) or 1) if E.sharded(c) else 1  # ZeRO-3/FSDP divide the weights
    if w[0] / n <= (NO_QUANT_HEAVY_SHARE if lora else NO_METHOD_HEAVY_SHARE) * card:
        return None
    per = f", {gib(int(w[0] / n))} per GPU sharded over {n}" if n > 1 else ""
    return f"the 16-bit weights alone are {gib(w[0])} ({w[1]}){per}, {w[0] / n / card:.0%} of one GPU's {gib(card)}"


INFER_CROWD_SHARE = 0.75
"""16-bit weights above this share of one GPU (and up to WEIGHTS_ROOM_SHARE, where they no longer fit at all:
load_too_big), in a report that trains nothing: they load, and the rest of the card is too little to run them."""


def _inference_weights_crowd(c: Case) -> str | None:
    """Running (not training) a 16-bit model whose weights take most of one GPU: the evidence line, or None."""
    if c.est is not None or c.oom.kind != "cuda" or c.oom.phase not in (None, "load", "generation") or \
            E.TRAINING_WORDS.search(E.text(c)) or E.quantized(c) or E.weights_quantized(c) or E.offloads_layers(c) \
            or max(E.world_size(c) or 1, E.gpu_count(c) or 1) > 1:
        return None
    w, card = E.named_weights(c), E.card_bytes(c)
    if w is None or card is None or not INFER_CROWD_SHARE * card < w[0] <= WEIGHTS_ROOM_SHARE * card:
        return None
    return f"the 16-bit weights are {gib(w[0])} ({w[1]}), {w[0] / card:.0%} of the GPU's {gib(card)}: too little is left"


_QUANT_WISH = re.compile(r"(?:how (?:do|can|could|should) (?:i|we)|how to|is it possible to|can (?:i|we)|怎么|怎样|如何|能否|能不能|"
                         r"可以|可不可以|想)[^。.\n?？]{0,24}?(?:改成|换成|用|使用|开启|设置|load|use|switch|run|train|enable)"
                         r"[^。.\n?？]{0,12}?(?:int4|int8|4[- ]?bit|8[- ]?bit|量化|quantiz\w*)|"
                         # the quantization first, the question after: '量化模型quantize怎么改？'
                         r"(?:int4|int8|4[- ]?bit|8[- ]?bit|量化|quantiz\w*)[^。.\n?？]{0,16}?(?:怎么|如何|怎样)(?:改|设置|用|开启|做|弄)",
                         re.I)
"""The report asks how to run quantized ('mode怎么改成int4', 'how do I load it in 4-bit?') because memory ran out: the
weights are 16-bit now, and the reporter's own suspect is them."""


_QUANT_CURES = re.compile(r"(?:增加|加上|加了|添加|使用|用了|开启|改成|换成|设置)\s?(?:了\s?)?(?:load_in_[48]bit|[48]\s?bit|int[48]|量化)"
                          r"\S{0,12}?(?:就|便)?(?:可以|能)(?:正常)?(?:跑|运行|训练|微调)|"
                          r"(?:with|adding|after adding|once i added|using|switching to) (?:load_in_[48]bit(?:=True)?|"
                          r"[48]-?bit (?:quantization|loading|weights)|quantization)[^.\n]{0,20}?\b(?:it )?"
                          r"(?:works|worked|runs|ran|fits|trains)\b", re.I)
"""The report says loading in 8/4-bit made it run ('我增加load_in_8bit就可以正常跑', 'with load_in_8bit it works'):
the run that ran out loaded the weights unquantized, even where the code posted is the fixed one."""


_QUANT_TRAINED_NAME = re.compile(r"q[-_]?lora|(?<![a-z0-9])(?:4|8)[-_ ]?bit|(?<![a-z])nf4|(?<![a-z])bnb(?![a-z])|int4", re.I)
"""An adapter's name that says it was trained on a quantized base ('qwen3-8b-support-qlora', 'llama-4bit-lora')."""


def _quantized_adapter_on_16bit(c: Case) -> str | None:
    """The script loads a LoRA adapter trained on a 4-bit base (QLoRA, its name says so) onto a base it loads in 16-bit
    (AutoPeftModelForCausalLM.from_pretrained(adapter, dtype=bfloat16), no quantization_config): the weights take 16
    bits where 4 were meant, so 4-bit loading, not a larger card, is what is missing. The evidence line, or None."""
    a = c.settings.get("adapter_loaded")
    m = _QUANT_TRAINED_NAME.search(a) if isinstance(a, str) else None
    if m is None or not c.has_oom or E.quantized(c) or E.weights_quantized(c):
        return None
    return (f"the script loads the adapter '{a}', whose name says it was trained on a quantized base ('{m.group(0)}'), "
            f"onto a base it loads in 16-bit (no quantization_config): 16 bits per frozen weight where 4 were meant")


_QUANT_MEANT = re.compile(r"BitsAndBytesConfig\((?:[^()]|\([^()]*\))*?\bload_in_[48]bit\s*=\s*True|"
                          r"\bbnb_4bit_(?:quant_type|compute_dtype|use_double_quant)\s*=", re.S)
"""4-bit (or 8-bit) loading written in the script: a BitsAndBytesConfig asking for it, or the 4-bit options (TRL's
ModelConfig(bnb_4bit_quant_type='nf4'))."""


def _quantization_meant_not_applied(c: Case) -> str | None:
    """The script writes 4-bit loading, yet the model it loads gets none of it (a BitsAndBytesConfig passed to the
    trainer, which ignores it for a model already loaded; a ModelConfig with the 4-bit options but not load_in_4bit,
    so get_quantization_config returns None): the weights load in 16-bit where 4 bits were meant. The evidence line."""
    script = c.inputs.script.text if c.inputs.script is not None else ""
    m = _QUANT_MEANT.search(script)
    if m is None or not c.has_oom or E.quantized(c) is not False:
        return None
    line = script.count("\n", 0, m.start()) + 1
    return (f"the script writes 4-bit loading (line {line}: `{m.group(0).splitlines()[0].strip()}`), but the model it "
            f"loads never receives it: its from_pretrained asks for no quantization, so the weights load in 16-bit")


def no_quant(c: Case) -> Cause | None:
    if c.full_fine_tune:
        return None  # every weight is trained: 4-bit frozen weights are a LoRA's option, not this run's (ddp_replica)
    meant = _quantization_meant_not_applied(c)
    if meant:
        return Cause("no_quant", "the 4-bit loading the script writes never reaches the model",
                     "the weights load in 16-bit unless the from_pretrained that builds the model is given the "
                     "quantization config", [e for e in (_numbers(c), meant) if e], ("quantize",),
                     [Action("pass the config to the load itself: from_pretrained(..., quantization_config=bnb_config) "
                             "(TRL: load_in_4bit=True in ModelConfig, or the quantization_config in model_init_kwargs "
                             "when the trainer loads the model by name)", "quality: slight",
                             patch=["+ AutoModelForCausalLM.from_pretrained(..., quantization_config=bnb_config)"],
                             id="quantize")], strength="script")
    qlora_on_16bit = _quantized_adapter_on_16bit(c)
    if qlora_on_16bit:
        return Cause("no_quant", "the QLoRA adapter's base is loaded in 16-bit",
                     "an adapter trained with QLoRA runs on the 4-bit base it was trained on; loaded without a "
                     "quantization_config the base takes four times the memory",
                     [e for e in (_numbers(c), qlora_on_16bit) if e], ("quantize",),
                     [Action("load the base in 4-bit as it was trained: quantization_config=BitsAndBytesConfig("
                             "load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_compute_dtype=torch.bfloat16) in "
                             "the from_pretrained call", "quality: none (the adapter was trained on it)",
                             patch=["+ quantization_config=BitsAndBytesConfig(load_in_4bit=True, "
                                    "bnb_4bit_quant_type='nf4', bnb_4bit_compute_dtype=torch.bfloat16)"],
                             id="quantize")], strength="script")
    cured = _QUANT_CURES.search(c.inputs.error_text or "") if c.has_oom else None
    if cured:
        return Cause("no_quant", "the model was not quantized when it ran out",
                     "the weights load in 16-bit unless 4- or 8-bit is asked for; the report says quantized loading runs",
                     [e for e in (_numbers(c), f"the report says '{cured.group(0)}'") if e], ("quantize",),
                     [Action("load the weights in 4-bit or 8-bit (bitsandbytes: load_in_4bit / load_in_8bit, or "
                             "quantization_bit): what the report found to run", "quality: slight", id="quantize")],
                     strength="proven")
    # asking for int4 is no int4 yet: only loading flags that ask for it say the weights are quantized
    wish = _QUANT_WISH.search(c.inputs.error_text or "") if c.has_oom and E.quantized(c) is not True else None
    if wish and not _lora_weights_heavy(c):
        return Cause("no_quant", "the model is not quantized", "the weights load in 16-bit unless 4- or 8-bit is asked "
                     "for; a quantized load keeps a quarter (4-bit) or half (8-bit) of them",
                     [e for e in (_numbers(c), f"the report says '{wish.group(0)}'") if e], ("quantize",),
                     [Action("load the weights in 4-bit (bitsandbytes NF4: load_in_4bit / quantization_bit 4; or a "
                             "released int4/int8 build of the model)", "quality: slight", id="quantize")],
                     strength="inferred")
    crowded = _inference_weights_crowd(c) if c.has_oom and not quantization_refused(c.inputs.error_text or "") else None
    if crowded:
        return Cause("no_quant", "the 16-bit weights leave too little of the card to run",
                     "the weights load in 16-bit unless 4- or 8-bit is asked for; what is left of the card is too "
                     "little for the activations and the generation cache",
                     [e for e in (_numbers(c), crowded) if e], ("quantize",),
                     [Action("load the weights in 4-bit or 8-bit (bitsandbytes load_in_4bit / load_in_8bit, or a GPTQ/AWQ "
                             "build): a quarter or half of them, and the rest of the card to run", "quality: slight",
                             id="quantize")], strength="inferred")
    heavy_named = _lora_weights_heavy(c) if c.has_oom else None
    if heavy_named and not quantization_refused(c.inputs.error_text or ""):  # refused: asks for another way
        said = quantization_stated(E.text(c)) if E.quantized(c) is False else None
        unset = (f"the report speaks of '{said.group(0)}', but the posted config sets no quantization key (quantization_bit, "
                 f"load_in_4bit): the weights load in 16-bit") if said else None
        return Cause("no_quant", "the base model is not quantized", "a fine-tune loads the base weights in "
                     "16-bit unless 4-bit is asked for (every trainer's default); QLoRA keeps them in 4",
                     [e for e in (_numbers(c), unset, heavy_named) if e], ("quantize",),
                     [Action("load the base weights in 4-bit (QLoRA: load_in_4bit / quantization_bit 4 / adapter: "
                             "qlora): a quarter of the 16-bit weights", "quality: slight", id="quantize")],
                     strength="numbers")
    if not c.from_user or c.setup is None or O.quant(c.setup.quant).bits < 16 or not (c.has_oom or c.over_budget) \
            or not E.loading_known(c):
        return None
    if c.est is None and c.has_oom:
        return None  # 16-bit LoRA is a choice, not a cause, until the model's size says the weights are the problem
    chosen = str(c.settings.get("torch_dtype") or "").lower()  # the dtype the user asked for, '' when left default
    if c.has_oom and chosen and "32" not in chosen and _weights_exceed_card(c):
        # the weights alone do not fit at the 16-bit dtype the user chose (load_too_big): that is the cause, 4-bit only
        # one of its levers. Left at the default (fp32 before transformers 5) 4-bit loading stays the first answer, as
        # the tutorials give it
        return None
    ev = [_numbers(c)] if c.has_oom else []
    if c.est:
        ev.append(f"estimate: the unquantized {c.setup.compute_dtype} linear weights alone are "
                  f"{gib(c.est.component('quantized weights'))} "
                  f"({c.est.model}); peak {gib(c.est.peak_bytes)}")
    # ZeRO-3/FSDP divide the weights over the GPUs
    shards = max(E.world_size(c) or 1, E.gpu_count(c) or 1) if E.sharded(c) else 1
    weights = c.est.component("quantized weights") / shards if c.est else 0
    heavy = bool(c.est and c.budget_bytes and weights > 0.5 * c.budget_bytes)
    if "32" in chosen:
        heavy = False  # weights the user loads in fp32: 16-bit loading (fp32_training) halves them before any 4-bit
    script = c.inputs.script
    if heavy and script is not None and not script.trains and c.budget_bytes and \
            weights <= INFER_CROWD_SHARE * c.budget_bytes:
        # a script that only runs the model (no trainer, no backward): no gradients or optimizer beside the weights,
        # so half the card leaves room to run; only weights crowding the card are the cause (_inference_weights_crowd)
        heavy = False
    if not heavy and c.has_oom and not E.adapter_named(c) and not E.lora_16bit(c):
        return None  # light weights and no adapter named: 4-bit loading is a LoRA's lever, and it gives back little
    if not heavy and c.est and c.budget_bytes and \
            c.est.peak_bytes - 0.75 * weights > FAR_OVER_CARDS * c.budget_bytes:
        return None  # 4-bit weights (a quarter of the 16-bit) would leave the step far over the card: not the cause
    return Cause("no_quant", "the base model is not quantized", "without 4-bit loading the frozen weights take 16 "
                 "(or 32) bits each; QLoRA keeps them in 4", [e for e in ev if e], ("quantize",),
                 strength=("script" if c.inputs.script is not None else "numbers") if heavy else "inferred")


_LONG_WORDS = re.compile(r"(?:long|longer|longest|very long|too long|overly long|over-long) (?:sentences?|samples?|"
                         r"sequences?|examples?|inputs?|outputs?|data|documents?|lines (?:of|in)\b|texts?\b)|"
                         # the thing too long is the text ('文本过长', '超长文本'), not a wait ('等待时间过长')
                         r"(?:文本|序列|样本|句子|数据|输入|输出|上下文|长度|回答|回复|token|output|input|text|prompt|response|answer)\S{0,3}"
                         r"(?:超长|过长|太长|(?:比较|较|很|特别|非常)长)|(?:较|比较|很|特别|非常|过|太|超)长的?(?:文本|序列|样本|句子|数据|输入|回答)|"
                         r"长(?:文本|序列|样本)|超长(?:文本|序列|样本|"
                         r"上下文|数据)|samples? (?:that )?"
                         r"exceed\w* max|variable (?:number|length)s? of (?:\w+ )?tokens|too many (?:\w+ )?tokens|"
                         r"token\s?(?:数量|数)\S{0,2}(?:太多|过多|过大|太大)|"
                         r"outlier|"
                         # fairseq's refusal of one sample longer than the token budget of a batch
                         r"exceeds max_tokens limit|"
                         r"(?:big|large|huge|very large|oversized)[- ](?:size[d]? |resolution )?(?:images|pictures|photos)|"
                         # the step that dropped the long samples is gone or off: 'removes the remove_longshortdata'
                         r"\blong_?short_?data\b|\bremove_long\w*|"
                         r"filter\w*?[_ ](?:out[_ ])?(?:the[_ ])?long[_ ](?:samples?|utterances?|data)|"
                         # hours of audio or video in one input ('对于2小时的音频', 'transcribing an hour of audio')
                         r"(?:\d+(?:\.\d+)?|一|两|二|三|半|an?)\s?(?:个)?(?:小时|hours?|hrs?)\s?(?:的|of|long)?\s?"
                         r"(?:音频|视频|audio|recording|video)|"
                         # some of the inputs are long: 'a document of 40 sentences. some are long'
                         r"\bsome (?:of them |of the \w+ )?(?:are|were) (?:very |quite |too |really )?long\b|"
                         # the tokenizer's own warning: a sample longer than the model's maximum went in uncut
                         r"Token indices sequence length is longer than the specified maximum sequence length|"
                         # images at a high resolution, several to a sample: thousands of image tokens each
                         r"(?:多张)?高分辨率的?(?:图片|图像)|high[- ]resolution (?:images|pictures|frames)|"
                         r"(?:很多|大量|许多)大(?:尺寸的?)?图|(?:many|lots of) (?:large|big|huge) (?:images|pictures)|"
                         # a whole document as one input: 'a whole source file as the input', '整篇论文作为输入'
                         r"(?:whole|entire|full|complete) (?:[\w.+#-]+ ){0,2}(?:files?|documents?|books?|articles?|"
                         r"papers?|class(?:es)?|codebases?|repos(?:itory|itories)?|transcripts?|chapters?|pages?) as "
                         r"(?:the |an? |one )?(?:input|prompt|context|sample)|"
                         r"整(?:个|篇|本|份|段)[^，。,.\n]{0,16}?(?:文件|文档|类|文章|书|小说|论文|报告|代码|网页|对话)[^，。,.\n]{0,6}?"
                         r"(?:作为|当作|当成)(?:输入|prompt|上下文|样本)|"
                         # another dataset, more or longer, and the same settings now fail ('换成5万条数据之后...溢出')
                         r"换成[^，。,.\n]{0,12}?数据(?:集)?(?:之后|以后|后)|"
                         # how much data decides it, at the same batch: more data, more chance of a long sample
                         r"(?:size of|whole|full|entire) (?:the )?(?:data ?set|training data)\b[^.\n]{0,60}?(?:works or fails|"
                         r"fails|OOM|out of memory)|(?:after|since) (?:switching|changing|moving) to (?:a |the |my )?"
                         r"(?:larger|bigger|new|different|another|longer)\s(?:\w+\s)?(?:dataset|data)\b|"
                         # the data decides: one dataset trains, this one does not (the length is what differs)
                         r"(?:数据集|dataset)[^，。,.\n]{0,24}?(?:不会(?:报错|OOM|爆)|没(?:有)?问题|(?:works|worked|trains|trained|"
                         r"runs|ran) (?:fine|well|ok)|is fine)", re.I)


_LEN_KNOB = r"(?:--)?(?:max[_-]?(?:seq[_-]?)?len(?:gth)?|cutoff[_-]len|max[_-]seq[_-]length|model[_-]max[_-]length)"
_CAP_ADDED = re.compile(rf"(?:\badd\w*|\bset(?:ting)?|\bpass\w*|添加|加上?|设置|设定|指定)\s?(?:the |a )?{_LEN_KNOB}\b"
                        rf"[^.\n。,，?？]{{0,30}}?(?:works?|worked|fix\w*|help\w*|solv\w*|starts?|runs?|可以|就行|正常|解决|启动)|"
                        # (not 'without running out of memory', 'without an OOM': what runs, not a missing cap)
                        rf"(?:\bwithout(?!\s+(?:\w+ing\s)?(?:an?\s)?(?:OOM|out of))|不加|没(?:有)?(?:加|设置?))\s?"
                        rf"(?:the |a |这个参数|这个)?{_LEN_KNOB}?[^.\n。,，?？]{{0,12}}?"
                        rf"(?:OOM|out of (?:\w+ )?memory|runs? out|ran out|fails|crash\w*|不可以|不行|爆)|"
                        rf"{_LEN_KNOB}\s(?:is |was )?(?:not set|unset|None)\b|{_LEN_KNOB}[^.\n。]{{0,12}}?默认(?:是|为)?None", re.I)
"""The report says a length cap that was not there makes it work (added, or missing when it fails, or unset): with
no cap, a batch is as long as its longest sample, so the long samples are the cause and the cap the fix."""


LONG_SAMPLE_TOKENS = 4096
"""A sample the report says is this many tokens or more ('no entry is longer than 7500 tokens', 'from 50 to 19,900
tokens') is a long sample: the reporter names its length because it is the outlier."""
_SAMPLE_TOKENS = re.compile(r"\b(?:entr(?:y|ies)|samples?|examples?|sequences?|inputs?|texts?|documents?|conversations?|"
                            r"records?|rows?|data|dataset)\b[^.\n]{0,120}?\b(?:longer than|up to|as long as|over|more "
                            r"than|exceed\w*|to|and|reach\w*)\s~?(\d[\d,]*(?:\.\d+)?k?)\s?tokens", re.I)


LARGE_IMAGE_SIDE = 2000
"""An image side of this many pixels or more (4000x3000 photos, 7127*7127 scans) is far above what detectors and
vision encoders resize to (1333x800, 448, 1024): one such input is the long sample of a vision model."""
_IMAGE_DIMS = re.compile(r"(?<![\w.])\(?(\d{3,5})\s?(?:[*x×]|,\s?)\s?(\d{3,5})\)?(?![\w.])")
_IMAGE_WORDS = re.compile(r"\bimages?\b|\bphotos?\b|\bpictures?\b|\bresolution\b|\bpixels?\b|\bpx\b|图片|图像|分辨率", re.I)


def _large_image(text: str) -> re.Match | None:
    """Image dimensions of LARGE_IMAGE_SIDE or more, said beside an image word ('big size images like 7127*7127',
    'my own data is (2048, 1080)', 'resolution 4000x3000')."""
    for m in _IMAGE_DIMS.finditer(text):
        if max(int(m.group(1)), int(m.group(2))) >= LARGE_IMAGE_SIDE and \
                _IMAGE_WORDS.search(text[max(0, m.start() - 80):m.end() + 40]):
            return m
    return None


def long_said(text: str) -> re.Match | None:
    """The report says the samples are long: in words ('very long samples', '文本过长', too many image tokens), that
    only certain samples fail (ruled_out.some_data_fails), or by a sample length in tokens of LONG_SAMPLE_TOKENS or
    more; for a vision model, images far larger than it resizes to."""
    m = _LONG_WORDS.search(text) or some_data_fails(text) or _large_image(text)
    if m:
        return m
    for m in _SAMPLE_TOKENS.finditer(text):
        n = m.group(1).lower().replace(",", "")
        if float(n.rstrip("k")) * (1000 if n.endswith("k") else 1) >= LONG_SAMPLE_TOKENS:
            return m
    return None


EARLY_SHARE = 0.2
"""A failure after this share of the run's steps (the progress bar's 'step/total') has seen a fifth of the data: a rare
long sample may have arrived, however few steps that is (a short run, or a long gradient accumulation)."""
EARLY_STEPS = 10
"""A failure this many steps in or fewer, with no long sample named, is the ordinary batch (batch x length), not one
rare long sample arriving late: the first batches are a random draw of ordinary lengths."""


REQUEST_CARDS = 2
"""A single request this many times the card: no batch the run was set up with asks for that (a logits tensor of a
large batch may pass one card's size; several cards' worth is one runaway input). At a micro-batch of 1 one card's
worth is enough: nothing multiplies the tensor."""


def _request_above_card(c: Case) -> str | None:
    """One request several times the whole card (910 GiB on an 80 GB GPU): a single tensor that no batch, reservation
    or sharding of the weights can make room for, so one input is far longer than any batch was meant to be (an
    image without a pixel cap, a document without a length cap). The evidence line, or None."""
    o = c.oom
    card = o.total_bytes or E.card_bytes(c)
    # at a micro-batch of 1 no batch multiplies the tensor: any request above the whole card is one input's
    one = c.settings.get("per_device_train_batch_size") == 1 or batch_one_fails(c.inputs.error_text or "")
    cards = 1 if one else REQUEST_CARDS
    if not (c.has_oom and o.requested_bytes and card and o.requested_bytes > cards * card) or \
            o.phase in ("load", "save", "merge", "tokenization"):
        return None
    if one:
        return (f"one request of {gib(o.requested_bytes)} is more than the whole card ({gib(card)}) at a micro-batch "
                f"of 1: a single tensor no memory setting makes room for, so one input is far longer than the rest")
    return (f"one request of {gib(o.requested_bytes)} is more than {REQUEST_CARDS} times the whole card ({gib(card)}): a single tensor "
            f"that no batch or memory setting makes room for, so one input is far longer than the rest")


def request_above_card(c: Case) -> Cause | None:
    """A request larger than the card: one input far too long, whatever else the report shows (a reservation, a
    replica), since none of those explains a single tensor the size of several cards."""
    huge = _request_above_card(c)
    if huge:
        return Cause("long_sample", "one input far longer than the rest",
                     "a tensor sized by one input's length (its tokens, or an image's patches) outgrew the card",
                     [huge], ("seq", "batch"),
                     [Action("cap the input: max_length for text, a pixel cap for images (max_pixels, "
                             "image_max_pixels), and drop the outliers longer than the cap", "quality: outliers "
                             "truncated", id="cap_length")], strength="proven")
    return None


_VL_MODEL = re.compile(r"qwen[\d.]*-?vl|\w+-vl\b|\w+vl-?\d|llava|internvl|minicpm-?v|cogvlm|idefics|pixtral|molmo|paligemma|"
                       r"llama[-_ ]?3\.2[-_ ]?(?:\d+b[-_ ]?)?vision|glm-4v|"
                       # video LLMs: every sampled frame is an image's worth of tokens
                       r"video-?llama\d*|video-?llava|video-?chat\w*|internvideo\d*|llava-?video|longva|"
                       r"qwen[\d.]*-?omni", re.I)
"""A vision-language model named (Qwen2-VL, Qwen2.5-VL, LLaVA, InternVL, MiniCPM-V, Pixtral, Llama 3.2 Vision, ...)."""


_VL_INPUT = re.compile(r"多图|多张(?:高分辨率的?)?(?:图片|图像)|(?:图片|图像|视频)推理|推理(?:图片|图像|视频)|multi-?image|multiple "
                       r"images|video (?:inference|understanding|input)|(?:inferring|inference on|generating for) an? "
                       r"(?:image|video)|"
                       # the frames a video is sampled into: 'changed the max_frames from 180 to 16', 'fps=2'
                       r"\bmax_frames\b|\bnum_frames\b|\b\d+ (?:video )?frames\b|video frames", re.I)
"""Images or video as the input of an inference, named without the model ('多图推理', 'video inference')."""


def vision_tokens(c: Case) -> Cause | None:
    """A vision-language model that runs out while it evaluates or generates at a batch of one or unknown: the
    variable is the image, not the batch. Qwen2-VL-style processors turn an image into one token per 28x28 patch
    up to max_pixels (16384 tokens by default), so one high-resolution image is a very long sample."""
    bs = c.settings.get("per_device_eval_batch_size") or c.settings.get("per_device_train_batch_size")
    named = _VL_MODEL.search(E.text(c) + " " + str(c.settings.get("model") or ""))
    m = named or _VL_INPUT.search(E.text(c))
    if not (c.has_oom and m and c.oom.phase in ("eval", "generation") and (bs is None or bs == 1)):
        return None
    return Cause("long_sample", "images at full resolution make very long inputs",
                 "a vision-language model turns each image into tokens by its resolution; unbounded, one large image "
                 "is thousands of tokens", [(f"a vision-language model ('{m.group(0)}')" if named else
                                             f"images or video frames as the input ('{m.group(0)}')") + f" in {c.oom.phase} "
                                            f"({c.oom.phase_evidence})" + (", one sample at a time" if bs == 1 else "")],
                 ("seq",), [Action("cap the image resolution: max_pixels (Qwen2-VL: e.g. 256*28*28 to 1024*28*28 "
                                   "instead of the 16384*28*28 default), image_max_pixels (LLaMA-Factory), MAX_PIXELS "
                                   "(ms-swift); and cap max_length for the text", "quality: smaller images",
                                   id="cap_length")], strength="inferred")


_MEDIA = r"(?:audio|speech|recording|wav|mp3|flac|video|transcri\w*|tts|asr|语音|音频|视频|录音)"
_LONG_INPUT = re.compile(r"\b(?:long|longer|lengthy|very long|too long)\s(?:audios?|recordings?|wav(?:e)?(?:\s?files?)?|"
                         r"audio\s?files?|videos?|utterances?|clips?|speech|inputs?|documents?)\b|"
                         r"\b(?:audio|recording|input|video|clip|document)s?\s(?:is|are|was|were|gets?|"
                         r"becomes?)\s(?:too |very |quite |a bit |slightly |really )?(?:long|longer)\b|"
                         # minutes or hours of media in one call: '11 minutes of audio', '3-hour audio', 'audio files,
                         # around ~3 hours'
                         r"(?:\d+(?:\.\d+)?|an?|several|a few)[\s-]?(?:minutes?|mins?|hours?|hrs?)[\s-](?:of\s|long\s)?"
                         rf"{_MEDIA}|{_MEDIA}\w*\s(?:files?\s)?(?:of\s)?(?:about |around |~|over )*~?\d+(?:\.\d+)?\s?"
                         r"(?:minutes?|mins?|hours?|hrs?)\b|"
                         r"(?:音频|视频|录音|输入)\S{0,3}(?:较长|很长|过长|太长|比较长|长一点|长一些)|"
                         r"(?:较|比较|很|特别|非常|过|太|超)长的?(?:音频|视频|录音|输入)", re.I)
"""The report ties its failure to one input's length at inference: a long audio, prompt or document, minutes or
hours of audio or video in one call ('Cuda out of memory if the audio is long', 'transcribe long audio files, around
~3 hours', '11 minutes of audio ... slightly larger files cause it to run out'). Not a 'longer prompt' of a generating
model: there the cache of what it generates grows too (generation_batch), and users call a few words long."""
_LARGER_MEDIA = re.compile(r"\b(?:larger|bigger|longer) (?:audio |video |wav )?files?\b", re.I)


ONE_INPUT_BLOCK_SHARE = 0.25
"""One failed request of this share of the card or more while running a model on its input (an inference, a voice
conversion, a transcription) with no batch named: a block sized by one input's length (attention over all its frames
or tokens), not by a batch."""
_RUNS_ONE_INPUT = re.compile(r"\binfer\w*|推理|\bconvert\w*|转换|\btranscri\w*|\bsvc\b|\bvoice\b|\bvits\b|\btts\b|"
                              r"\bspeech\b|\baudio\b|音频|语音", re.I)


def _one_input_block(c: Case) -> str | None:
    """Inference (a generation, a voice conversion, a transcription) whose one failed request is ONE_INPUT_BLOCK_SHARE
    of the card or more, with no batch named: the evidence line, or None."""
    req, card = c.oom.requested_bytes, c.oom.total_bytes or E.card_bytes(c)
    t = c.inputs.error_text or ""
    if not (req and card) or req < ONE_INPUT_BLOCK_SHARE * card or c.oom.phase not in (None, "generation") or \
            not _RUNS_ONE_INPUT.search(t) or \
            re.search(r"batch[_ ]?size|\bbs\b|--batch", t, re.I):
        return None
    return (f"one request of {gib(req)}, {req / card:.0%} of the card, while running the model with no batch named: a "
            f"block as long as the input (one input is this large only when it is long)")


def long_input(c: Case) -> Cause | None:
    """Inference (nothing trained) that runs out on one long input the report names: the input's own length (an
    encoder's attention over a whole recording, a long prompt's activations) is what grows, not a batch, so cutting
    the input into pieces is the lever."""
    t = c.inputs.error_text or ""
    m = _LONG_INPUT.search(t) or (_LARGER_MEDIA.search(t) if re.search(_MEDIA, t, re.I) else None)
    big = _one_input_block(c) if not m else None
    if not (c.has_oom and (m or big)) or c.oom.phase not in (None, "generation") or \
            c.oom.kind in ("cpu", "dispatch") or TRAINS_OR_EPOCHS.search(E.text(c)) or E.uses_vllm(c):
        return None  # (a serving engine's context is its own reservation: vllm_memory)
    return Cause("long_sample", "one input is too long to run at once",
                 "an input's activations (an encoder's attention over a whole recording, a long prompt's keys and "
                 "values) grow with its length; a batch of one does not help",
                 [f"the report says '{m.group(0)}'" if m else big],
                 ("seq",), [Action("cut the input into pieces the model was trained on (audio: 20-30 s chunks with a "
                                   "little overlap, or the pipeline's chunk_length_s; text: max_length or a sliding "
                                   "window) and join the outputs", "quality: context at the cuts", id="cap_length")],
                 strength="inferred")


_PACKED = re.compile(r"(?<![\w-])(?:packing\s*[=:]\s*(?:true|1)\b|--packing\b(?!\s+(?:false|0)\b)|neat_packing|pack_size|"
                     r"packed (?:sequences?|samples?|batch\w*)|sequence packing|(?:with|using|enable\w*) packing)", re.I)
"""Sequence packing: samples concatenated into rows of one fixed length, so every batch is as long as the pack and
no rare long sample can arrive late ('unpacked' does not match)."""


_CAP_SAID = re.compile(r"\b(?:files?|audios?|clips?|utterances?|recordings?|samples?|sequences?|inputs?|texts?|sentences?|"
                       r"documents?)\b[^.\n]{0,30}?\b(?:up to|at most|no (?:longer|more) than|shorter than|under|below|"
                       r"max(?:imum)?(?: of)?) \d+(?:\.\d+)?\s?(?:s|sec|secs|seconds|tokens)\b", re.I)
"""The report says its inputs are already cut to a length ('wav audio files up to 10 seconds'): no sample is longer than
that, so a failure late in the run is not a rare long one."""


def long_sample(c: Case) -> Cause | None:
    o = c.oom
    t0 = c.inputs.error_text or ""
    if _PACKED.search(t0 + " " + E.settings_text(c)) and not long_said(t0):
        return None  # packed: every batch is the pack's length, so the length itself (batch_or_seq) is what ran out
    run = c.inputs.run
    late = [e for e in run.oom_events if (e.get("step") or 0) > 0] if run else []
    t = c.inputs.error_text or ""
    added = _CAP_ADDED.search(t)  # the cap is what made it work: any length posted is that fix, not what failed
    words = (long_said(t) or added) if c.has_oom else None
    if not words and _CAP_SAID.search(t):
        return None  # every input is cut to a length the report gives: the batch of them is what ran out
    # max_length=None set in the script or config: nothing is truncated, so a batch is as long as its longest sample
    uncapped = E.length_uncapped(c) and c.has_oom
    capped = isinstance(c.settings.get("max_length"), int) and not o.step and not added
    # (an evaluation of one long input the report names is that input's length, unless it names the eval batch)
    evaluated = o.phase == "eval" and not EVAL_BATCH_WORDS.search(t)
    # an inference loop of the user's own that printed its progress ('4/160', '8/160') before failing on uncut inputs:
    # the batches before it fit at the same size, so what changed is the length of this batch's longest input
    # (with no script to say the inputs are cut, the length is still the one thing that changes between batches)
    looped = _loop_progress(t) if o.phase in ("generation", "eval") and (words or uncapped or c.inputs.script is None) \
        and not capped and not re.search(CHAT_HISTORY, t, re.I) else None
    if o.phase != "later_step" and not late and not looped and not (
            (words or uncapped) and (o.phase in (None, "training", "first_step") or evaluated) and not capped):
        return None  # long samples under a length cap make every batch as long as the cap: that is the batch
    seen = o.total_steps and o.step and o.step / o.total_steps >= EARLY_SHARE  # a good part of the epoch went by
    if not (words or late or uncapped or seen) and o.step is not None and 0 < o.step <= EARLY_STEPS:
        return None  # a few steps in, the batches seen are the ordinary ones: no rare long sample has arrived yet
    bs = c.settings.get("per_device_train_batch_size")
    if not (words or late or o.step) and isinstance(bs, int) and bs >= LARGE_MICRO_BATCH:
        return None  # a late failure at a large micro-batch, no long sample named: the batch multiplies the longest
    ev = []
    if o.step:
        ev.append(f"the run reached step {o.step}" + (f" of {o.total_steps}" if o.total_steps else "")
                  + (f" after {o.elapsed_s / 3600:.1f} h" if o.elapsed_s else "") + " before failing: the setup fits "
                  "ordinary batches")
    elif o.phase == "later_step":
        ev.append(f"the run trained for a while before failing ({o.phase_evidence}): the setup fits ordinary batches")
    if looped:
        ev.append(f"the loop printed its progress up to {looped} before failing: batches of the same size fit")
    if words:
        ev.append(f"the report says '{words.group(0)}'")
    if uncapped:
        ev.append(f"the script or config sets max_length={c.settings['max_length']}: no sample is truncated, so a "
                  f"batch is as long as its longest sample")
    for e in late[:3]:
        where = f"ranks/rank-{e['rank']}/events.jsonl" if "rank" in e else "events.jsonl"
        ev.append(f"{where}: oom_recovery at step {e.get('step')} ({e.get('phase')}), micro-batch "
                  f"{e.get('old_micro_batch')} -> {e.get('new_micro_batch')}")
    if c.est:
        ev.append(f"estimate at the full max length ({c.setup.seq_len} tokens x {c.setup.batch_size}): peak {gib(c.est.peak_bytes)}"
                  + (f" of {gib(c.budget_bytes)}" if c.budget_bytes else ""))
    return Cause("long_sample", "one long batch late in the run",
                 "with dynamic padding a batch is as long as its longest sample; the first very long one arrived here",
                 ev, ("seq", "batch", "checkpointing", "loss"),
                 [Action("cap the length (max_length) to what fits, or drop the few outliers; group_by_length also "
                         "puts the longest batch first so an OOM shows at step 1", "quality: outliers truncated",
                         id="cap_length"),
                  Action("qlorafit train re-splits the step on OOM and keeps going (guard.on_oom)", "speed: that step",
                         id="guard")], strength="numbers" if (o.step or late or looped) else "inferred")


_LOOP_PROGRESS = re.compile(r"^[ \t]*(?:[A-Za-z]\w* )?(\d+)\s?/\s?(\d+)[ \t]*$", re.M)
"""A line a user's loop prints as it goes ('8/160', 'batch 8/160'): inputs done of all."""


def _loop_progress(text: str) -> str | None:
    """The last progress line a loop printed before the traceback, where some inputs were done and not all: 'n/total',
    or None."""
    at = re.search(r"Traceback|out of memory|OutOfMemoryError", text)
    done = [m for m in _LOOP_PROGRESS.finditer(text[:at.start()] if at else text)
            if 0 < int(m.group(1)) < int(m.group(2))]
    return f"{done[-1].group(1)}/{done[-1].group(2)}" if done else None


WEIGHTS_ROOM_SHARE = 0.9
"""Weights above this share of a card leave no room to run: the CUDA context takes 0.3-0.8 GiB, and vLLM's default
gpu_memory_utilization is 0.9 of the card for weights and KV cache together (an 8B model's 15 GiB on a 16 GiB card
cannot even be served)."""


def _weights_exceed_card(c: Case) -> str | None:
    """The model's weights alone fill one GPU (more than WEIGHTS_ROOM_SHARE of it), with one process: nothing but a
    smaller (or quantized) model or a bigger card helps. The evidence line, or None."""
    w, card = E.named_weights(c), E.card_bytes(c)
    if w is None or card is None or w[0] <= WEIGHTS_ROOM_SHARE * card or (E.world_size(c) or 1) > 1 \
            or (E.gpu_count(c) or 1) > 1 or E.offloads_layers(c):
        return None  # (llama.cpp's family keeps the layers that do not fit in host RAM: the size alone is no cause)
    if E.lora_16bit(c) and c.oom.phase not in ("load", "generation") and not _infers_with_adapter(c):
        # a 16-bit LoRA: the missing 4-bit loading is the cause (no_quant), not the model's size (generating with a
        # LoRA adapter is no LoRA training: the weights still have to fit first)
        return None
    return f"the weights alone are {gib(w[0])} ({w[1]}), " + (
        f"more than the GPU's {gib(card)}" if w[0] > card else
        f"over {WEIGHTS_ROOM_SHARE:.0%} of the GPU's {gib(card)}: no room left to run")


QUANTIZING_SHARE = 0.5
"""A quantization run whose 16-bit weights take this share of the card or more: with the calibration's activations
(hundreds of samples of 512-2,048 tokens through each layer) and the packed copy it writes, the card is full."""


def _quantizing_run_fills(c: Case) -> str | None:
    """A quantization or conversion run (E.quantizes: AWQ/GPTQ calibration, llm-compressor's oneshot, a
    weight-only conversion), not a training one, whose 16-bit weights take QUANTIZING_SHARE of the card or more. The
    evidence line, or None."""
    if not c.has_oom or c.oom.kind in ("cpu", "dispatch") or not E.quantizes(c) or \
            _TRAINED.search(E.text(c)) or c.oom.phase not in (None, "load", "eval"):
        return None
    w, card = E.named_weights(c), E.card_bytes(c)
    if w is None or card is None or w[0] < QUANTIZING_SHARE * card:
        return None
    said = " ".join(E.QUANTIZER.search(E.text(c)).group(0).split())
    said = said if len(said) <= 60 else said[:57] + "..."
    return (f"the report quantizes the model ('{said}'): its weights "
            f"are {gib(w[0])} ({w[1]}) while it runs, {w[0] / card:.0%} of the GPU's {gib(card)}")


_SERVER = re.compile(r"text[-_]generation[-_](?:launcher|inference|server)|\bTGI\b|\bserv(?:e|ing|er)\b|"
                     r"\bdeploy(?:ing|ment)?\b|\binference server|部署", re.I)
_SPLIT_SET = re.compile(r"num[-_]shard|tensor[-_]parallel(?:[-_]size)?|--tp\b|device_map|pipeline[-_]parallel", re.I)


def _serve_sharded(c: Case) -> Action | None:
    """A model served (an inference server, or vLLM) on a machine with several GPUs, failing at the load with no
    sharding set: the weights went to one GPU while the others idle. The lever is sharding them over all of them."""
    t = E.text(c)
    gpus = E.gpu_count(c) or 1
    if gpus < 2 or not (_SERVER.search(t) or E.uses_vllm(c)) or _SPLIT_SET.search(t) or \
            c.settings.get("tensor_parallel_size") or E.full_tune(c):
        return None
    return Action(f"shard the weights over the {gpus} GPUs: text-generation-inference --num-shard {gpus}, vLLM "
                  f"--tensor-parallel-size {gpus}, transformers device_map='auto'", "none: the GPUs are there",
                  patch=[f"+ --num-shard {gpus}  (TGI) / --tensor-parallel-size {gpus}  (vLLM)"], id="shard")


_ONE_CARD_LOAD = re.compile(r"无法(?:在)?单(?:张)?卡(?:上)?加载|单(?:张)?卡(?:上)?(?:无法|不能|没法)加载|单卡加载不了|"
                            r"(?:cannot|can'?t|can not|unable to|won'?t|does ?n[o']t) (?:be )?load(?:ed)?\b[^.\n]{0,30}?"
                            r"\b(?:on|onto|in|into) (?:a single|one|single) (?:gpu|card)\b|"
                            # the whole model put on one GPU where a device_map would split it
                            r"(?:allocat|load|put|mov|plac)\w* (?:the )?(?:whole|entire|full|complete) model (?:\w+ )?"
                            r"(?:on|onto|to|in) (?:a single |one |the first )?(?:gpu|cuda|device)\s?(?::\s?0|0)?\b|"
                            # several GPUs there, the model on the first only: the others sit idle
                            r"load\w* only (?:on|onto|to|in) (?:my |the )?(?:first|one|a single) (?:gpu|card)|"
                            r"not using (?:my|the) (?:second|other) (?:gpus?|cards?)|"
                            r"(?:the )?other (?:\d+ )?(?:gpus|cards) (?:are|were|stay|stayed|sit|sat) (?:completely )?"
                            r"(?:empty|idle|unused|not used)|"
                            r"只(?:使)?用了(?:其中)?(?:一张|一块|一个)|只有(?:一张|一块|一个)(?:卡|GPU|显卡)(?:被)?(?:利用|使用|用)|"
                            r"(?:另|还有)(?:一张|一块|一个)(?:卡|GPU|显卡)(?:还)?(?:没有?(?:被)?(?:利用|使用|用到|用上)|(?:还)?空着)|"
                            r"only (?:one|a single|the first) (?:gpu|card) (?:is |was |gets? |got )?(?:being )?(?:used|utili[sz]ed)|(?:另一张|另外一张|其[他余])\S{0,6}(?:压根|完全)?没(?:有)?(?:被)?(?:使用|用到|用上)|"
                            # asking how to get every card used ('才能把4张卡都用起来', 'how do I use all 4 GPUs?')
                            r"把\S{0,4}(?:卡|GPU|显卡)都用(?:起来|上)|(?:how (?:do|can|could|should) (?:i|we)|is there a way to)"
                            r"[^.\n?]{0,30}?\b(?:use|utili[sz]e)\b[^.\n?]{0,6}?\ball (?:the |my )?(?:\d+ |four |two |eight )?(?:gpus|cards)\b", re.I)
"""The report says the model does not load on one card ('模型无法单卡加载', "it can't be loaded on a single GPU", 'this line
allocates the whole model onto GPU:0'), or that of several GPUs only the first took the model ('load only on my first
GPU', 'not using my second GPU', '只用了其中一张'), or asks how to get them all used ('才能把4张卡都用起来'): for
inference or training, its weights are larger than one card, and the others are there to split it over."""


_TOO_BIG = re.compile(r"\b(?:the |this |that |my )?model (?:is|was|'s|seems(?: to be)?|might be|must be) (?:probably |just |simply |"
                      r"way |much |far |still )?too (?:big|large)\b|\bI think (?:it|the model)(?:'s| is) too (?:big|large)\b|"
                      r"模型太大", re.I)
"""The report reads the model as too big for the card ('I think it is too big', '模型太大')."""
_SHORTER_OUTPUT_FAILS = re.compile(r"(?:max[-_ ]new[-_ ]tokens|max[-_ ]length|max[-_ ]tokens|输出长度|生成长度)\S{0,4}"
                                   r"(?:[^。.\n]{0,24}?)(?:也不行|还是不行|也没用|都不行|仍然不行|依然不行|"
                                   r"(?:did ?n[o']t|does ?n[o']t|didn't|doesn't|did not|does not) (?:help|work|change)|"
                                   r"still (?:fails|OOMs|runs out|the same))", re.I)
"""The report says a shorter generation still fails ('将输入的max-new-tokens改成64也不行', 'max_new_tokens=64 didn't
help')."""
_TRAINED = re.compile(r"\btrain|fine-?tun|\bsft\b|微调|训练", re.I)
"""The report trains (a LoRA adapter alone is used for inference too, so it is not training)."""
_INFERS = re.compile(r"\bgenerat\w*|\binferenc\w*|\bserv(?:e|es|ing)\b|推理|生成", re.I)  # not 'chat': '-Chat' names models


def _infers_with_adapter(c: Case) -> bool:
    """A LoRA adapter loaded to generate ('generate.py --lora_path ...'), nothing trained: its base weights have to
    fit the card like any model's (load_too_big), no 4-bit training option is missing."""
    t = E.text(c) + " " + E.settings_text(c)
    return bool(_INFERS.search(t)) and not _TRAINED.search(t) and "do_train" not in c.settings


def _whole_card_at_start(c: Case) -> str | None:
    """One allocation of nearly the whole card (WEIGHTS_ROOM_SHARE or more) by a job that trains nothing, before any
    step or generation is shown: what a program puts on the card at once as it starts is its weights ('allocating
    15712.47 MiB on device 0' on a 16 GB P100 serving a 16B model), so they alone do not fit. The evidence line, or
    None."""
    req, card = c.oom.requested_bytes, c.oom.total_bytes or E.card_bytes(c)
    if not (req and card) or req < WEIGHTS_ROOM_SHARE * card or req > card or c.oom.phase not in (None, "load") or \
            _TRAINED.search(E.text(c)) or E.TRAINING_WORDS.search(E.text(c)):
        return None
    return (f"one allocation of {gib(req)} as the job starts is {req / card:.0%} of the GPU's {gib(card)}: the weights "
            f"it places on the card at once leave no room to run")


_AUTO_MAP = re.compile(r"device_map\W{0,4}auto\b", re.I)
_PACKED_FULL = re.compile(r"\b(?:gpus?|cards?|devices?)\b[^.\n]{0,30}?\b(?:maxed out|max(?:ed)?[- ]out|filled (?:up|to (?:the )?"
                          r"(?:max|capacity|the brim))|full)\b|\bmax_memory\b", re.I)
"""device_map='auto' placed the weights, and the report says the GPUs it filled were maxed out ('the GPUs were maxed out
just right on their capacity, even if the other GPUs are free'), or reaches for max_memory: the placement left no room
on those cards for the forward pass. (accelerate fills each GPU in turn up to its free memory.)"""


def _packed_by_auto_map(c: Case) -> str | None:
    """The weights packed onto the first GPUs by device_map='auto', leaving no room to run: the words, or None."""
    if not c.has_oom or c.oom.kind not in ("cuda", "presumed") or c.oom.phase not in (None, "load", "generation") or \
            E.TRAINING_WORDS.search(E.text(c)) or not _AUTO_MAP.search(E.text(c)):
        return None
    m = _PACKED_FULL.search(c.inputs.error_text or "")
    return m.group(0) if m else None


WEIGHTS_FAR_OVER = 2
_RAN_THERE = re.compile(r"\b(?:I|we) (?:have |had )?(?:fine-?tuned|finetuned|trained)\b|\bcan (?:fine-?tune|finetune|train)\b|"
                        r"(?<![A-Za-z])(?:4|3|2|8)[-_ ]?bits?(?![A-Za-z])|\bint[48]\b|\bgptq\b|\bawq\b|\bgguf\b|\bnf4\b|\bexl2\b", re.I)
"""Weights this many times the card or more cannot have loaded: whatever phase the report names, it failed there."""
SMALL_TRAINING_CARD_BYTES = int(4.5 * 2**30)
"""A card this small (a 2 GB Quadro, a 4 GB laptop GPU) holds no transformer's training state beside its weights."""
_BATCH_IS_ONE = re.compile(r"\bbatch[_ ]?size (?:is|of|=) ?1(?!\d|\.\d)|\bbs ?= ?1(?!\d|\.\d)", re.I)


def _card_too_small_to_train(c: Case) -> str | None:
    """Training on a card of SMALL_TRAINING_CARD_BYTES or less that fails at a batch of 1 (or at any batch): with
    nothing left to shrink, the model and its training state are larger than the card. The evidence line, or None."""
    card = E.card_bytes(c) or c.oom.total_bytes
    t = c.inputs.error_text or ""
    if not (c.has_oom and card and card <= SMALL_TRAINING_CARD_BYTES) or c.oom.kind not in ("cuda", "words", None) or \
            not _TRAINED.search(E.text(c)) or c.oom.phase not in (None, "load", "training", "first_step"):
        return None
    one = batch_one_fails(t) or _BATCH_IS_ONE.search(t)
    return (f"training on a GPU of {gib(card)} fails at a batch of 1 ('{one.group(0)}'): the model and its "
            f"training state (weights, gradients, optimizer) do not fit so small a card") if one else None


def load_too_big(c: Case) -> Cause | None:
    # in a merge or save, loading the whole model on one card is that step's own cause (save_merge)
    said = _ONE_CARD_LOAD.search(E.text(c)) if c.has_oom and c.oom.kind not in ("cpu", "dispatch") and \
        c.oom.phase not in ("merge", "save") else None
    if VLLM_KV_SIZING.search(c.inputs.error_text or ""):
        return None  # whatever the words ('cannot load on one card'), vLLM got to sizing its KV cache: the weights fit
    # inference first loads the model: weights that fill the card fail there, whatever the user set out to do. Not
    # where the report trained on the same card (generating after a fine-tune: the weights were seen to fit)
    # Nor where the chat ran turns before it failed (its history grew): the weights were loaded and answered
    infer_only = c.oom.phase == "generation" and not _TRAINED.search(E.text(c)) and \
        not re.search(CHAT_HISTORY, E.text(c), re.I)
    # weights of twice the card or more never loaded, whatever the report says it ran (a 175B 'for text-generation'
    # on one 80 GB card): the failure was at the load
    w, card = E.named_weights(c), E.card_bytes(c)
    # (not weights the report shows running on that card: a model it fine-tuned there, or a 4-bit build)
    far = bool(w and card and w[0] >= WEIGHTS_FAR_OVER * card) and c.oom.phase in ("generation", "eval") and \
        not _RAN_THERE.search(E.text(c))
    exceed = _weights_exceed_card(c) if (c.oom.phase in (None, "load") or infer_only or far) and \
        c.oom.kind not in ("cpu", "dispatch") and c.has_oom else None
    exceed = exceed or (_whole_card_at_start(c) if c.has_oom and c.oom.kind not in ("cpu", "dispatch") else None)
    # the reporter's own reading, where nothing trains: 'I think it is too big' (a guess: it places the load, it
    # proves nothing)
    guess = _TOO_BIG.search(E.text(c)) if c.has_oom and c.oom.kind not in ("cpu", "dispatch") and \
        c.oom.phase in (None, "load") and not _TRAINED.search(E.text(c)) else None
    # an inference whose shorter output still fails: what the generation length sizes (the KV cache, the output) is
    # not what fills the card, the weights are
    guess = guess or (_SHORTER_OUTPUT_FAILS.search(E.text(c)) if c.has_oom and c.oom.kind not in ("cpu", "dispatch")
                      and c.oom.phase in (None, "load", "generation") and not _TRAINED.search(E.text(c)) else None)
    quantizing = _quantizing_run_fills(c) if not (exceed or said or guess) else None
    if quantizing:
        return Cause("load_too_big", "the quantization run holds the 16-bit model on the card",
                     "a calibration or conversion loads the model at 16 bits before it packs it: those weights, with "
                     "the calibration activations beside them, need the card the 4-bit result will not",
                     [quantizing, _numbers(c)] if _numbers(c) else [quantizing],
                     actions=[Action("offload while quantizing: load with device_map='auto' and max_memory below the "
                                     "card (the layers left on the CPU are moved in one at a time), or the tool's "
                                     "own sequential / CPU-offload option; or run it on a larger GPU",
                                     "speed: layers cross PCIe", patch=["+ device_map='auto', max_memory={0: '<card "
                                                                        "minus a few GiB>', 'cpu': '<RAM>'}"],
                                     id="shard"),
                              Action("fewer or shorter calibration samples", "quality: a coarser calibration",
                                     id="cap_length")],
                     strength="numbers", phase=c.oom.phase)
    small = _card_too_small_to_train(c) if not (exceed or said or guess) else None
    if small:
        return Cause("load_too_big", "the card is too small to train this model",
                     "at a batch of 1 the activations are the smallest they get; what is left, the weights with their "
                     "gradients and optimizer state, needs a larger card", [e for e in (small, _numbers(c)) if e],
                     actions=[Action("train on a GPU with more memory (8 GB or more for a base-size transformer), or "
                                     "a smaller model; a 4-bit LoRA (QLoRA) where the model is a causal LM",
                                     "cost or quality", id="shard"),
                              Action("cap the input length", "quality: less context", id="cap_length")],
                     strength="inferred", phase=c.oom.phase)
    packed = _packed_by_auto_map(c) if not (exceed or said or guess) else None
    if packed:
        return Cause("load_too_big", "device_map='auto' filled the GPUs with weights, leaving no room to run",
                     "accelerate fills each GPU in turn up to its free memory: the cards it filled have nothing left "
                     "for the activations of the forward pass",
                     [e for e in (f"the report says '{packed}' of a model placed with device_map='auto'", _numbers(c))
                      if e],
                     actions=[Action("cap what each GPU gets for weights so that every card keeps room to run: "
                                     "from_pretrained(..., device_map='auto', max_memory={0: '30GiB', 1: '30GiB', ...}) "
                                     "below each card's size, or device_map='balanced'", "speed: more cards used",
                                     patch=["+ max_memory={i: '<card minus a few GiB>' for i in range(n_gpus)}"],
                                     id="shard")], strength="inferred", phase=c.oom.phase)
    if c.oom.phase != "load" and not exceed and not said and not guess:
        return None
    ev = [(f"phase: model load (weights of {WEIGHTS_FAR_OVER}x the card or more cannot have loaded, whatever the "
           f"report names: {c.oom.phase_evidence})" if far and exceed else f"phase: model load ({c.oom.phase_evidence})")
          if c.oom.phase else "", _numbers(c), exceed or "",
          f"the report says '{(said or guess).group(0)}'" if said or guess else ""]
    if c.est:
        ev.append(f"estimate: the weights as loaded take {gib(c.est.phases['load'])}"
                  + (f" of {gib(c.budget_bytes)}" if c.budget_bytes else ""))
    split = _serve_sharded(c) if c.oom.phase == "load" else None
    several = (E.gpu_count(c) or 1) > 1 or re.search(r"device_map", E.text(c))  # the report names the split itself
    if said and not split and several:  # the other GPUs are there: split the layers over them
        split = Action(f"split the model over the {E.gpu_count(c) or 'available'} GPUs: device_map='auto' in from_pretrained (or "
                       f"the tool's --device_map auto) for inference or the merge; ZeRO-3/FSDP to train",
                       "speed: layers run one GPU after another", patch=["+ device_map='auto'"], id="shard")
    if split:
        ev.append(f"the model is served on a machine with {E.gpu_count(c)} GPUs and nothing shards it over them")
    return Cause("load_too_big", "the weights do not fit while loading",
                 "the failure happened before training: the model itself (or its unquantized shards) does not fit",
                 [e for e in ev if e], ("quantize",),
                 ([split] if split else []) + ([Action("load a 4-bit build of the model (bitsandbytes NF4, or a GPTQ/AWQ checkpoint): a quarter "
                          "of the 16-bit weights", "quality: slight", id="quantize")]
                  if exceed and c.est is None and not E.quantized(c) and "4-bit" not in exceed else [])
                 + [Action("use a smaller model or a larger GPU; device_map='auto' with max_memory offloads layers to "
                           "the CPU (slow)", "speed or quality", id="smaller_model")],
                 strength="proven" if said else "numbers" if exceed or (
                     c.est and c.budget_bytes and c.est.phases["load"] > c.budget_bytes)
                 else "inferred", phase="load" if exceed or said or guess else None)  # weights beyond the card never get past the load


_REFERENCE_RUN = re.compile(r"(?<![A-Za-z])(?:dpo|kto|ppo|rlhf)(?![A-Za-z])", re.I)
_STAGE_BEFORE_FIT = re.compile(r"(?<![A-Za-z])(?:sft|pt|pretrain\w*|fine-?tun\w*|微调)(?![A-Za-z])(?:[^.\n。;；]|(?<=\d)\.(?=\d)){0,40}?(?:works?|worked|"
                               r"fine|fits?|fitted|ran|runs|能够?(?:支持)?(?:运行|跑)|可以|正常|没(?:有)?问题|支持运行)", re.I)


def reference_copy(c: Case) -> Cause | None:
    """DPO (KTO, PPO) holds a reference model next to the trained one: a second copy of the weights. Where the
    stage before it (SFT, pre-training) fits the same card and this one does not, the copy is what no longer fits."""
    t = E.text(c)
    run, before = _REFERENCE_RUN.search(t), _STAGE_BEFORE_FIT.search(t)
    if not (c.has_oom and run and before) or c.oom.kind in ("cpu", "dispatch") or c.oom.phase in ("merge", "save"):
        return None
    if E.lora_16bit(c) or E.weights_quantized(c):
        return None  # under PEFT the reference is the base with the adapter disabled: no second copy
    return Cause("load_too_big", f"{run.group(0).upper()} holds a second copy of the model (the reference)",
                 "the policy being trained and a frozen reference model are both on the GPU: twice the weights of the "
                 "stage before", [f"the report says '{before.group(0)}' and runs {run.group(0)}, which keeps a "
                                  f"reference model beside the trained one"], ("quantize",),
                 [Action("shard the two models over more GPUs (DeepSpeed ZeRO-3 / FSDP), or remove the copy: "
                         "precompute_ref_log_probs=True (TRL) computes the reference once before training, and with "
                         "LoRA the reference is the base with the adapter disabled (no second model: do not pass "
                         "ref_model)", "speed: sharding traffic, or a pre-pass", id="shard")], strength="inferred")


_LOSS_FRAMES = ("_convert_to_fp32", "cross_entropy", "log_softmax", "logits.float()", "ForCausalLMLoss",
                "_get_per_token_logps", "selective_log_softmax", "logprobs_from_logits")
_EAGER_FRAMES = ("eager_attention_forward", "attn_weights = torch.matmul", "attn_weights = nn.functional.softmax",
                 "torch.matmul(query")
"""Eager attention's own frame or source lines. Not 'attn_weights' alone: transformers' attention layers print
`attn_output, attn_weights = attention_interface(` for every implementation, sdpa and flash included."""
_EAGER_WORDS = re.compile(r"attn_implementation\s*[=:]\s*[\"']?eager\b|\beager attention\b", re.I)
"""The report says attention is eager, in words or as a setting inside a sentence (a string value prose does not set)."""


_LOGITS_UPCAST = re.compile(r"\blogits\b[^\n]{0,60}\.float\(\)|\blogits\b[^\n]{0,60}\.to\(torch\.float32\)")
"""A traceback's source line that casts the logits to fp32 ('logits = logits[:, :vocab_size].float()')."""


def _loss_frames(text: str) -> bool:
    return any(k in text for k in _LOSS_FRAMES) or bool(_LOGITS_UPCAST.search(text))


def fp32_logits_in_frames(c: Case) -> Cause | None:
    """The traceback itself points at the loss: decisive, whatever else matches."""
    if not _loss_frames(c.inputs.error_text or ""):
        return None
    return fp32_logits(c)


def eager_in_frames(c: Case) -> Cause | None:
    if not any(k in (c.inputs.error_text or "") for k in _EAGER_FRAMES):
        return None
    return eager_attention(c)


_LOSS_WORDS = re.compile(r"\b(?:in|at|during|inside) (?:the )?(?:loss|cross[-_ ]?entropy|log_?softmax)\b(?!\.backward)"
                         r"(?![ _-]?mask)|"  # (not TRL's warning about 'the loss mask': which tokens are trained)
                         r"\blogits?\b[^.\n]{0,40}\bvocab|\b(?:large|huge|big|\d{3}k|\d{3},\d{3}) vocab(?:ulary)?\b|"
                         # the logits seen allocated or copied (a profile): '连续分配了3次logits', 'allocations of logits'
                         r"(?:分配|拷贝|复制|allocat\w*|cop(?:y|ies|ied))[^.\n。]{0,12}?\blogits\b|"
                         r"\blogits\b[^.\n。]{0,12}?(?:are |is |was |were |get |gets )?(?:allocat\w*|copied|拷贝|复制|分配)", re.I)
"""The report says the loss or the vocabulary-wide logits are where it ran out, or that the logits are allocated or
copied (again) where memory peaks."""
_MATERIALIZED = re.compile(r"materiali[sz]\w*[^.\n]{0,20}?\blogits\b|\blogits\b[^.\n]{0,20}?materiali[sz]\w*", re.I)
"""The logits said to be built whole ('materializes logits in VRAM during eval'): the tensor itself, in any phase (an
evaluation that keeps them batch after batch says so otherwise: eval_logits)."""


def fp32_logits(c: Case) -> Cause | None:
    text = c.inputs.error_text or ""
    from qlorafit.doctor.rules_setup import vocab_states

    # the loss frame is where the last allocation failed; trained fp32 embeddings that fill the card are what took it
    frames = _loss_frames(text) and not vocab_states(c)
    if not frames and c.oom.phase in ("load", "merge", "save", "generation"):
        return None  # no loss is computed there: a training step's logits, however large, are not what ran out
    said = _LOSS_WORDS.search(text) if c.oom.phase not in ("eval", "generation") else None
    said = said or _MATERIALIZED.search(text)
    share = c.est.component("logits and loss") / c.est.peak_bytes if c.est else 0.0
    if c.setup is not None and (O.loss(c.setup.loss_impl).chunked or c.setup.offload_lm_head):
        return None  # chunked/fused, or the head in host RAM (always the streamed loss): no full logits
    if not frames and not said and (share < LOGITS_SHARE or not c.from_user):  # assumed defaults prove nothing
        return None
    if not (c.has_oom or c.over_budget):
        return None
    card = c.budget_bytes or E.card_bytes(c)
    if not frames and not said and c.est and card and \
            c.est.peak_bytes - c.est.component("logits and loss") > FAR_OVER_CARDS * card:
        # known from the estimate alone, and the step without any logits would still be far over the card: the
        # logits are large because the batch and length are, and only those bring the whole step under the card
        return None
    ev = [_numbers(c)] if c.oom.kind else []
    if frames:
        ev.append("the failing frame is the loss: the logits are cast to fp32 or fed to cross_entropy")
    elif said:
        ev.append(f"the report says '{said.group(0)}'")
    if c.oom.requested_bytes:
        ev.append(f"the failed request was {gib(c.oom.requested_bytes)}" + (f" ({c.oom.requested_bytes / c.oom.total_bytes:.0%} "
                  f"of the card)" if c.oom.total_bytes else ""))
    if c.est and share:
        ev.append(f"estimate: logits and loss take {gib(c.est.component('logits and loss'))} of the {gib(c.est.peak_bytes)} "
                  f"peak ({c.est.tokens_per_micro_batch:,} tokens x {c.shape.vocab_size:,} vocab)")
    acts = [] if c.est else [Action("compute the loss in chunks, never the full fp32 logits: use_liger_kernel=True "
                                    "(Trainer/SFTConfig), Unsloth's fused loss, or qlorafit's chunked loss", "none",
                                    patch=["+ use_liger_kernel=True  # pip install liger-kernel"], id="fused_loss")]
    # the loss's frame proves where the last allocation failed; where the user's own settings size the logits as a
    # small share of the step (a 7B's replica filling the card), it was only the last straw
    straw = bool(frames) and c.est is not None and c.from_user and share < LOGITS_SHARE
    if straw:
        ev.append(f"but by your settings the logits are {share:.0%} of the step: the loss is where the card ran out, "
                  f"not what filled it")
    # the user's script shows what made the step (and so its logits) large: that mistake is the cause, the loss only
    # where it surfaced
    why = _step_made_large(c) if frames else None
    if why:
        straw = True
        ev.append(f"but {why}: the loss is where the card ran out, not what filled it")
    return Cause("fp32_logits", "fp32 logits at a large vocabulary",
                 "the loss materializes tokens x vocab logits in fp32 (and their gradient): with a 128k-256k vocabulary "
                 "that is the largest tensor of the step", ev, ("loss", "seq", "batch"), acts,
                 strength="inferred" if straw else "proven" if frames else
                 # (with no length cap the estimate's length is a guess: its share of logits proves nothing)
                 "numbers" if share >= LOGITS_SHARE and c.from_user and not E.length_uncapped(c) else "inferred")


FP32_WEIGHTS_SHARE = 0.5
"""Weights loaded in fp32 above this share of the card are what filled it, whatever allocation failed last."""


def _step_made_large(c: Case) -> str | None:
    """What the user's script did that makes the step large beyond its batch and length, or None: an evaluation batch
    larger than the training's, every row padded to max_length, the micro-batches' losses summed before one backward,
    or weights loaded in fp32 that fill the card."""
    s = c.settings
    if c.oom.phase == "eval":
        told = eval_batch_evidence(c)  # the evaluation's own batch, larger than the training's, built those logits
        return told[0] if told else None
    if s.get("pads_to_max_length"):
        return f"the script pads every sample to max_length ({s['pads_to_max_length']})"
    if s.get("sums_losses"):
        return (f"the script sums the micro-batches' losses before one backward ({s['sums_losses']}): every "
                f"micro-batch's activations and logits stay alive until it")
    bs = s.get("per_device_train_batch_size")
    if c.from_user and isinstance(bs, int) and bs >= LARGE_MICRO_BATCH:
        return f"the script's micro-batch is {bs} sequences"
    named, card = E.model_params(c), c.budget_bytes or E.card_bytes(c)
    if named and card and "32" in str(s.get("torch_dtype") or "") and named[0] * 1e9 * 4 > FP32_WEIGHTS_SHARE * card:
        return f"the script loads the {named[0]:g}B model's weights in fp32 ({gib(int(named[0] * 4e9))} of the card)"
    return None


def step_made_large(c: Case) -> Cause | None:
    """The user's script pads every row to max_length or sums the micro-batches' losses before one backward: the step
    holds far more tokens at once than its batch says, and that is the cause (fp32 weights are fp32_training's)."""
    s = c.settings
    if not c.has_oom or not (s.get("pads_to_max_length") or s.get("sums_losses")) or \
            c.oom.phase not in (None, "training", "first_step", "later_step"):
        return None
    if s.get("pads_to_max_length"):
        return Cause("batch_or_seq", "every sample is padded to max_length",
                     "padding='max_length' makes every row of every batch max_length tokens, whatever the texts' "
                     "lengths: activations and logits for all of them", [_numbers(c), _step_made_large(c)],
                     ("seq", "batch", "checkpointing"),
                     [Action("pad each batch to its own longest sample: drop padding='max_length' and let the collator "
                             "pad (DataCollatorForLanguageModeling / DataCollatorWithPadding pad dynamically)", "none",
                             patch=["- tokenizer(..., padding='max_length', max_length=N)",
                                    "+ tokenizer(..., truncation=True, max_length=N)  # the collator pads per batch"],
                             id="seq")], strength="script")
    return Cause("batch_or_seq", "gradient accumulation that keeps every micro-batch's graph",
                 "summing the micro-batches' losses before one backward keeps every micro-batch's activations and "
                 "logits alive: the step is the whole accumulation at once", [_numbers(c), _step_made_large(c)],
                 ("batch", "checkpointing"),
                 [Action("call backward on each micro-batch's loss divided by the accumulation steps, and step the "
                         "optimizer every N micro-batches: (loss / N).backward()", "none",
                         patch=["- total_loss = total_loss + loss / N", "+ (loss / N).backward()"], id="batch")],
                 strength="script")


_NO_FLASH = re.compile(r"(?:没有|无法使用|不能用|不能使用|用不了|不支持|没装|没有安装|未安装|without|(?<![A-Za-z])no|"
                       r"can(?:no|')t use|cannot use|unable to use|not using|could ?n[o']t install|can(?:no|')t install)"
                       r"\s*(?:the\s+)?flash[-_ ]?(?:attn|attention)", re.I)
"""The report says the run had no flash attention ('HuggingFace推理脚本（没有vllm，没有flash-attention）', 'since I
cannot use flash-attention'): the models whose own code picks flash-attn or nothing (Qwen 1, ChatGLM, Baichuan,
InternLM remote code; torch before 2.0) then compute attention the eager way."""
_THOUSANDS_OF_TOKENS = re.compile(r"(?<![\d.])\d{1,3}(?:,?\d{3})+\s*(?:tokens?|个\s?token|字)|\b\d+k (?:tokens?|context)|"
                         r"\blong (?:context|input|prompt|sequence|text|document)s?\b|长文本|长序列|长上下文", re.I)
"""A length of a thousand tokens or more named in the report, or a long text input said in words (long media:
_LONG_INPUT)."""


def eager_without_flash(c: Case) -> Cause | None:
    """The report says it runs without flash attention, on inputs of thousands of tokens: the seq x seq scores of the
    eager path are what a long input makes large (ahead of the long input itself, which they turn quadratic)."""
    text = c.inputs.error_text or ""
    said = _NO_FLASH.search(text) if _THOUSANDS_OF_TOKENS.search(text) or _LONG_INPUT.search(text) else None
    if said is None or not c.has_oom or c.oom.kind in ("cpu", "dispatch") or c.oom.phase in ("load", "merge", "save"):
        return None
    cause = eager_attention(c, said)
    cause.evidence.append("the models whose own code falls back from flash-attn to plain matmul-softmax attention "
                          "(Qwen 1, ChatGLM, Baichuan remote code; any model on torch < 2.0) build every head's "
                          "seq x seq scores")
    return cause


def eager_attention(c: Case, no_flash: re.Match | None = None) -> Cause | None:
    text = c.inputs.error_text or ""
    frames = any(k in text for k in _EAGER_FRAMES)
    told = c.from_user or "attn_implementation" in c.settings  # a whole config, or the posted settings name it
    set_eager = told and c.setup is not None and O.attention(c.setup.attn_impl).materializes_scores \
        and c.setup.seq_len >= 1024
    said = _EAGER_WORDS.search(text) if not (frames or set_eager) else None
    said = said or no_flash
    if not (frames or set_eager or said):
        return None
    if not (c.has_oom or c.over_budget):
        return None
    ev = ["the failing frame is eager attention's score matrix"] if frames else []
    if said:
        ev.append(f"the report says '{said.group(0)}'")
    if set_eager and c.settings.get("sdpa_math_only"):
        ev.append(f"the script allows sdpa only its math kernel ({c.settings['sdpa_math_only']}): it computes "
                  f"attention the eager way, every head's seq x seq scores in fp32 (drop the context, or allow "
                  f"SDPBackend.EFFICIENT_ATTENTION / FLASH_ATTENTION beside it)")
    elif set_eager and "attn_implementation" in c.settings:
        ev.append(f"attention is {c.settings['attn_implementation']!r} by the posted settings (a trainer's default "
                  f"where they leave it out: OpenRLHF without --flash_attn, LLaMA-Factory's flash_attn: disabled)")
    if c.setup is not None and c.shape is not None:
        t = c.setup.seq_len
        ev.append(f"eager attention keeps {c.shape.num_heads} heads x {t} x {t} scores per sequence per layer "
                  f"(sdpa's fused kernels and flash never build them)")
    acts = [] if c.est else [Action("load the model with attn_implementation='sdpa' (or flash_attention_2)", "none",
                                    patch=['+ from_pretrained(attn_implementation="sdpa")'], id="use_sdpa")]
    return Cause("eager_attention", "eager attention's seq x seq scores",
                 "attn_implementation='eager' builds the full attention matrix, quadratic in the length", ev, ("sdpa",),
                 acts, strength="proven" if frames else "script" if set_eager else "inferred")


def batch_or_seq(c: Case) -> Cause | None:
    training = c.oom.phase in ("training", "first_step", "later_step") or (c.oom.kind and c.oom.phase is None)
    if not ((c.has_oom and training) or c.over_budget):
        return None
    ev = [_numbers(c), E.forward_on_cpu(c)]
    if c.settings.get("eval_mode_left"):
        ev.append(f"gradient checkpointing is off while training: {c.settings['eval_mode_left']} (transformers "
                  f"checkpoints only in training mode; call model.train() after each evaluation)")
    if c.oom.phase:
        ev.append(f"phase: {c.oom.phase.replace('_', ' ')} ({c.oom.phase_evidence})")
    if c.est:
        top = sorted(c.est.components, key=lambda p: -p.bytes)[:3]
        ev.append(f"estimate{'' if c.from_user else ' with ASSUMED settings'} ({c.setup.batch_size} x "
                  f"{c.setup.seq_len} tokens, checkpointing "
                  f"{c.setup.grad_checkpointing}): peak {gib(c.est.peak_bytes)}"
                  + (f" against {gib(c.budget_bytes)}" if c.budget_bytes else "") + "; largest: "
                  + ", ".join(f"{p.name} {gib(p.bytes)}" for p in top))
    flat = re.sub(r"\s+", " ", c.inputs.error_text or "")
    wish = _BATCH_WISH.search(flat)
    if wish and not batch_one_fails(flat) and not re.search(r"\b(?:still|even|does ?n[o']t|did ?n[o']t|no (?:luck|help|change)|same)\b",
                                                                flat[wish.end():wish.end() + 40]):
        ev.append(f"the report says '{wish.group(0)}'")  # the report's own suspect breaks a tie between inferences
    acts = [] if c.est else _step_levers(c, ev)
    # the user's own script or config sets a large micro-batch and the first step fails: what they wrote shows it
    bs = c.settings.get("per_device_train_batch_size")
    # (a training loop of the user's own posted whole shows no step: its failure at that micro-batch is as much shown)
    own_loop = c.oom.phase is None and c.inputs.script is not None and c.inputs.script.backward_by_hand
    shown = c.from_user and isinstance(bs, int) and bs >= LARGE_MICRO_BATCH and (c.oom.phase == "first_step" or own_loop)
    if shown:
        ev.append(f"your settings: a micro-batch of {bs}"
                  + (", gradient checkpointing off" if c.settings.get("gradient_checkpointing") in (None, False) else ""))
    # sized from the user's own whole script or config: what grows with batch x length (saved activations, logits)
    # outweighs the weights at least twice and the step's peak is over the card, so the step itself is what ran out
    outgrown = False
    if c.from_user and (c.inputs.script is not None or not c.inputs.partial_settings) and c.est is not None and c.budget_bytes and \
            c.oom.phase == "first_step" and c.est.peak_bytes > c.budget_bytes:
        grows = c.est.component("saved activations") + c.est.component("logits and loss")
        if grows > 2 * c.est.component("quantized weights"):
            outgrown = True
            ev.append(f"estimate from your settings: activations and logits {gib(grows)} against "
                      f"{gib(c.est.component('quantized weights'))} of weights")
    return Cause("batch_or_seq", "the batch or the sequence length is too large for the card",
                 "activation memory grows with micro-batch x length; the step needs more than is free",
                 [e for e in ev if e], ("checkpointing", "batch", "seq", "loss", "sdpa", "dropout0"), acts,
                 strength="script" if shown else "numbers" if outgrown else "inferred")


_CKPT_OFF = re.compile(r"(?:never|not|n't|without|no|drop\w*|disabl\w*|remov\w*|turn\w* off|enabl\w*|turn\w* on)\b"
                       r"[^.\n]{0,60}?\bgradient[_ ]checkpointing|gradient[_ ]checkpointing\W{0,3}(?:is |was )?(?:never|not|"
                       r"off|disabled|false|inert|has no effect)", re.I)
_VISION = re.compile(r"image tokens|pixel|max_pixels|high[- ]resolution|[\w.]+-vl\b|\bvl\b|vision|llava|idefics|pixtral|"
                     r"paligemma|molmo", re.I)


_BATCH_WISH = re.compile(r"(?:have|need|want|ought|trying|try|how (?:do|can|could|should) (?:i|we)|should (?:i|we)|"
                         r"can (?:i|we)|could (?:i|we)|where (?:do|can) (?:i|we)) (?:to )?(?:reduce|lower|decrease|shrink|"
                         r"halve|change|set) (?:the |my |a )?(?:\w+ )?batch[_ ]?size|batch[_ ]?size (?:is |seems |may be |might "
                         r"be )?too (?:big|large|high)", re.I)
"""The report names the batch as its suspect ('I think I have to reduce the batch size', 'batch size is too big'),
before trying it."""
_LLM_TUNE = re.compile(r"(?<![A-Za-z])(?:q?lora|peft|sft|dpo|grpo|ppo|trl|fine-?tun\w*|finetun\w*|llm|transformers|"
                       r"Trainer)(?![A-Za-z])|[A-Za-z0-9]+Trainer\b|微调", re.I)
"""Words that make it an LLM fine-tune, where gradient checkpointing is a flag (not DeepSpeed or accelerate alone:
they launch any model)."""
_CKPT_DEFAULT_ON = re.compile(r"unsloth|llama[-_ ]?factory|llamafactory|torchtune|recipes/\w*(?:lora|full)_finetune",
                              re.I)
"""Trainers that turn gradient checkpointing on unless told otherwise: Unsloth, LLaMA-Factory, torchtune's recipe
configs (enable_activation_checkpointing: True); transformers, TRL and PEFT leave it off."""
_CKPT_ON = re.compile(r"gradient[_ ]checkpointing\W{0,3}(?:=|:)\s*(?:True|\"?unsloth)|(?:with|using) gradient[_ ]"
                      r"checkpointing|gradient[_ ]checkpointing (?:is |was )?(?:on|enabled)|"
                      r"gradient_checkpointing_enable|(?:开启|打开|启用|使用|用)了?\s?(?:unsloth\s?)?(?:的\s?)?(?:gradient[_ ]?"
                      r"(?:checkpointing)?|梯度检查点|重计算|gc\b)|--gradient[_-]checkpointing\b(?!\s+(?:False|false|0)\b)",
                      re.I)


def _checkpointing_unknown(c: Case) -> bool:
    """An LLM fine-tune whose checkpointing nothing shows to be on: transformers' and TRL's default is off, and off it
    is the largest activation term, so turning it on is the step's first lever when no setting says otherwise."""
    t = E.text(c)
    if c.settings.get("gradient_checkpointing") is not None or _CKPT_DEFAULT_ON.search(t) or _CKPT_ON.search(t):
        return False
    return bool(_LLM_TUNE.search(t) or prose_model(t))


def prose_model(t: str) -> bool:
    from qlorafit.doctor.prose import model_params_b

    return model_params_b(t) is not None


LONG_CONTEXT_TOKENS = 8192
"""A maximum length from this many tokens up makes the length the step's first lever where no estimate ranks them."""
LARGE_MICRO_BATCH = 16
"""A micro-batch from this size up makes the batch the first lever (transformers' default is 8)."""


LOGITS_CONTEXT_TOKENS = 32768
"""From this length up, with gradient checkpointing already on, the fp32 logits (tokens x a 128k-256k vocabulary, 4
bytes each, and their gradient) outgrow the checkpointed activations: the fused loss is the step's first lever."""
_CONTEXT = re.compile(r"(?<![0-9A-Za-z_.])(\d+(?:\.\d+)?)\s?[kK](?![0-9A-Za-z_])\s?(?:tokens?|context|上下文|长度|length|seq\w*|ctx)?|"
                      r"(?:context|上下文|seq(?:uence)?[_ ]len(?:gth)?|max[_ ]length|长度)\D{0,8}?(\d{5,6})\b", re.I)


def _context_tokens(c: Case, t: str) -> int:
    """The longest sequence length the settings or the report name ('128k context', '超过64k', max_length 65536)."""
    ml = c.settings.get("max_length")
    best = ml if isinstance(ml, int) else 0
    for m in _CONTEXT.finditer(t):
        n = float(m.group(1)) * 1024 if m.group(1) else int(m.group(2))
        best = max(best, int(n))
    return best


def _logits_dominate(c: Case) -> str | None:
    """Gradient checkpointing on and a length of LOGITS_CONTEXT_TOKENS or more: the fp32 logits are the step's
    largest tensor. The evidence line, or None."""
    t = c.inputs.error_text or ""
    on = c.settings.get("gradient_checkpointing") is True or _CKPT_ON.search(t) or _CKPT_DEFAULT_ON.search(t)
    ctx = _context_tokens(c, t)
    if not (on and ctx >= LOGITS_CONTEXT_TOKENS) or c.settings.get("gradient_checkpointing") is False:
        return None
    return (f"gradient checkpointing is on and the length reaches {ctx:,} tokens: the fp32 logits (tokens x "
            f"vocabulary) are now the largest tensor of the step")


def _step_levers(c: Case, ev: list) -> list[Action]:
    """The step's levers in the order the input points to, when no estimate can rank them: checkpointing first when
    the report says it is off (or dropped, never enabled); the length first when the samples are said to be long,
    the batch is already 1, the maximum length is long, or the samples are images (their tokens are the length); the
    batch first when it is large; checkpointing next when it is not known to be on in an LLM fine-tune (the libraries'
    default is off); the length ahead of the batch when the batch is said not to matter; the batch alone when the
    report says a smaller one helped."""
    t = c.inputs.error_text or ""
    batch = Action("lower per_device_train_batch_size (raise gradient_accumulation_steps to keep the effective "
                   "batch), turn gradient checkpointing on, or cap max_length", "speed or quality", id="smaller_step")
    length = Action("cap the length (max_length / cutoff_len / max_seq_length; for images max_pixels or a lower "
                    "resolution, which sets their token count) below the longest samples, or drop them: every batch "
                    "is padded to its longest sample", "quality: long samples truncated", id="cap_length")
    ckpt = Action("turn gradient checkpointing on (gradient_checkpointing=True; with PEFT also "
                  "model.enable_input_require_grads()): activations are kept per layer, not per op",
                  "speed: ~30% slower", id="checkpointing")
    flat = re.sub(r"\s+", " ", t)  # a sentence wrapped across lines is one sentence
    off = _CKPT_OFF.search(t) or c.settings.get("gradient_checkpointing") is False
    off = off if c.settings.get("gradient_checkpointing") is not True else None
    helps = batch_helps(flat)
    if helps:
        ev.append(f"the report says '{helps.group(0)}'")
        return [batch]
    first = []
    dominate = _logits_dominate(c)
    if dominate and not off:
        ev.append(dominate)
        first.append(Action("compute the loss in chunks, never the full fp32 logits: use_liger_kernel=True "
                            "(Trainer/SFTConfig, LLaMA-Factory enable_liger_kernel), Unsloth's fused loss, or "
                            "qlorafit's chunked loss", "none", patch=["+ use_liger_kernel=True  # pip install liger-kernel"],
                            id="fused_loss"))
    if off:
        ev.append(f"the report says '{off.group(0)}'" if hasattr(off, "group") else "gradient_checkpointing=False")
        first.append(ckpt)

    ml, bs = c.settings.get("max_length"), c.settings.get("per_device_train_batch_size")
    # a batch said to go no higher than 1 or 2 ('batch只能设置到1', 'I can only use a batch size of 1'): it runs there
    # and is as small as it gets, so what lets it grow again is checkpointing, not the length a failing batch of 1 points to
    capped = BATCH_CAPPED.search(flat)
    why = [w for w in (long_said(t), _CAP_ADDED.search(t), _VISION.search(t)) if w]
    large = isinstance(bs, int) and bs >= LARGE_MICRO_BATCH
    if why and large and isinstance(ml, int) and ml < LONG_CONTEXT_TOKENS:
        # long samples cut to a short cap, many to a batch: the cap bounds each sample, the batch multiplies them
        ev.append(f"the report says '{why[0].group(0)}', but the samples are cut to {ml:,} tokens and the "
                  f"micro-batch is {bs}")
        first.append(batch)
    elif why or (bs == 1 and not capped):
        ev.append(f"the report says '{why[0].group(0)}'" if why else "the micro-batch is already 1")
        first.append(length)
    elif isinstance(ml, int) and ml >= LONG_CONTEXT_TOKENS:
        ev.append(f"the maximum length is {ml:,} tokens: activations and logits grow with it")
        first.append(length)
    elif large:
        ev.append(f"the micro-batch is {bs}: activations grow with it")
        first.append(batch)
    if not off and _checkpointing_unknown(c):
        ev.append("gradient checkpointing is not shown to be on (off by default in transformers and TRL)")
        # only not shown, not said off: a smaller micro-batch (with accumulation) works whether or not it is on, so
        # it goes first where nothing else leads. (Checkpointing led here until session 15: on the 523 studied threads
        # it was the accepted fix on 15 of the 51 it led, the batch on about 23.)
        if capped:
            ev.append(f"the report says '{capped.group(0)}'")
        if not first and not batch_one_fails(flat) and not capped:
            first.append(batch)
        first.append(ckpt)
    tried = batch_one_fails(flat)
    if tried:  # the batch is ruled out, nothing more: the length goes ahead of it, not ahead of the rest
        # quoted without 'the report says': the words point away from the batch, not to this cause
        ev.append(f"a batch of 1 still fails ('{tried.group(0)}'): the batch is ruled out, the length is not")
        first.append(length)
    return [a for i, a in enumerate(first + [batch]) if a not in (first + [batch])[:i]]


def fp16_with_oom(c: Case) -> Cause | None:
    if not c.oom.fp16_signs or not c.has_oom:
        return None
    return Cause("fp16_overflow", "fp16 overflow signs in the same log",
                 "NaN/inf or unscale errors are a precision problem, separate from the OOM",
                 [f"the log says: {s!r}" for s in c.oom.fp16_signs[:3]])


# Order breaks ties between causes known equally well (diagnose_causes ranks by Cause.strength first): what no
# configuration change fixes comes first (precision, RAM, another process, the launch), then what the setup proves,
# then the phase, then what the estimate says dominates.
def _rules():
    from qlorafit.doctor import rules_launch as L
    from qlorafit.doctor import rules_setup as S

    # the failing frame's own cause (fp32 logits, eager attention scores) comes before causes a launch or a word
    # proves: the traceback shows what the memory was being allocated for
    return (fp16_overflow, script_breaks, S.bnb_cpu_dispatch, cpu_ram, other_process, eager_in_frames,
            fp32_logits_in_frames, step_made_large, request_above_card, S.quantize_job, S.script_holds_twice,
            L.vllm_memory, L.zero3_generation, L.ddp_replica, S.resume_state, S.kbit_prep_fp32,
            save_merge, S.cache_at_max_length, S.whole_set_at_once, eval_logits, eager_without_flash, vision_tokens, long_input, reference_copy, S.eval_batch, S.generation_batch, fragmentation, long_sample,
            load_too_big, no_quant, S.fp32_training, fp32_logits, eager_attention, batch_or_seq, fp16_with_oom)


def _numbers(c: Case) -> str:
    o = c.oom
    if o.kind is None:
        return ""
    parts = [f"{o.kind} OOM" + (f" ({o.form} message form)" if o.form else "")]
    if o.requested_bytes is not None:
        parts.append(f"tried to allocate {gib(o.requested_bytes)}")
    if o.total_bytes is not None:
        parts.append(f"GPU {o.gpu_index} total {gib(o.total_bytes)}, free {gib(o.free_bytes)}")
    if o.allocated_bytes is not None:
        parts.append(f"allocated by PyTorch {gib(o.allocated_bytes)}")
    if o.unallocated_reserved_bytes is not None:
        parts.append(f"reserved but unallocated {gib(o.unallocated_reserved_bytes)}")
    return "; ".join(parts)


def diagnose_causes(c: Case) -> list[Cause]:
    """Every rule that matches, primary first (a cause matched twice, by its frames and its estimate, listed once)."""
    out: list[Cause] = []
    for rule in _rules():
        cause = rule(c)
        if cause is not None and all(x.id != cause.id for x in out):
            out.append(cause)
    # the host's RAM ran out: causes of GPU memory (a replica per GPU, vLLM's share of the card) explain another
    # memory, however they are known, so host RAM comes first
    # (unless the host's RAM is the GPU's too and an engine reserved its share of it: _engine_on_shared_memory)
    host = c.oom.kind == "cpu" and not _engine_on_shared_memory(c)
    # a save that gathers the whole state dict in one place ('gathering the full state dict for 405b will CPU OOM'):
    # whichever memory it fills, the gather is the cause, and a sharded save is the fix, not more RAM
    gathered = c.oom.phase == "save" and re.search(GATHERED_STATE, E.text(c), re.I)
    first = "save_merge" if gathered else "cpu_ram" if host else None
    # a cause the report rules out (it fits at a smaller step, and this cause does not grow with the step) goes last,
    # with the words that rule it out
    out_ = {x.id: ruled_out(c.inputs.error_text or "", x) for x in out}
    for x in out:
        if out_[x.id]:
            x.evidence.append(out_[x.id])
    # a batch of 1 that still fails points away from the batch: among causes known equally well, one that does not
    # grow with the batch (the weights, a replica, a full fine-tune's states) goes ahead of it
    one = batch_one_fails(c.inputs.error_text or "") and any(x.id in STATIC_CAUSES for x in out)
    # stable: among causes known equally well, one the report's own words point to comes first, then rule order
    return sorted(out, key=lambda x: (x.id != first, bool(out_[x.id]), STRENGTH.index(x.strength),
                                      bool(one and x.id == "batch_or_seq"), not _said(x)))


def _said(cause: Cause) -> bool:
    """The report's words point to this cause (an evidence line quoting them), not only defaults or the launch."""
    return any(str(e).startswith("the report says") for e in cause.evidence)
