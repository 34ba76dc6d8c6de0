"""qlorafit against what users would pick instead, side by side in one device call (issue 16).

Contenders, each in its own process with its own PYTHONPATH (TRL 1.16 and Unsloth's TRL 1.15 cannot share one
install), all on the same random-weight Llama-3-8B shape (gpu_common.build_model), the same token rows (random ids,
seed fixed per configuration, full length, no padding) and LoRA r16 alpha 32 on q/k/v/o with checkpointing, bf16:
  recipe        the tutorials' Trainer + PEFT + prepare_model_for_kbit_training, paged AdamW 32-bit, dropout 0.05
  trl           TRL SFTTrainer 1.16 at its defaults (peft_config given, fused AdamW, chunked NLL, checkpointing)
  trl-best      the same plus its best documented settings that apply here: use_liger_kernel, and
                activation_offloading from 16K tokens on (padding_free is for flash-attention and padded batches:
                these rows are full-length and the image has no flash-attn)
  unsloth       Unsloth 2026.10.9 FastLanguageModel + its SFTTrainer (TRL 1.15), use_gradient_checkpointing="unsloth",
                adamw_8bit (its notebooks' default)
  qlorafit      qlorafit.runtime.step.train_step (the real step: collation, guard, clip, update) at the config defaults
  qlorafit-eager  the same with train.compile off (the default before this session)
  qlorafit-offload  the defaults with train.grad_checkpointing: offload (layer inputs in host RAM; for 16K+)
  qlorafit-graphs  experiment: the defaults with the compiled layers captured as CUDA graphs (reduce-overhead)
  qlorafit-sidealloc  offloaded, with the fetched inputs allocated on the side stream (before session 7)
  qlorafit-wholegraph  experiment: the defaults with each micro-batch's forward + backward captured as one CUDA
                graph per shape (torch.cuda.graph) and replayed; gradients kept allocated between steps
  qlorafit-cudagraphs  the defaults with train.cuda_graphs: on (the trainer's path made from qlorafit-wholegraph; from
                       session 8 'auto', the default, is on below 8,192 tokens per micro-batch)
  qlorafit-nographs    the defaults with train.cuda_graphs: off (compiled layers: the default before session 8)
  qlorafit-liger       the defaults (graphs below 8,192 tokens) with liger's RMSNorm, RoPE and SwiGLU (session 8's
                       experiment; from then on the default does this itself where liger-kernel is installed)
  qlorafit-maskattn    the defaults with the graphed pass's attention as before session 9 (transformers' own: a mask
                       tensor while capturing), to measure graphs.causal_attention in pairs
  qlorafit-compiledgraph  experiment: the defaults with the layers torch.compile'd inside the graphs (liger's fusions
                       left out), which failed to capture in session 8
  qlorafit-plan the configuration `plan` writes for a --plan-budget-gib card (default 24) at this length and batch
LoRA dropout is 0 for every contender except the recipe (Unsloth's fast path needs 0; same computation for all).

How it measures, per configuration: all contenders start together (load + 2 warm-up steps in parallel; compile
happens there), then `--rounds` rounds in which each contender runs one timed step while the others wait idle on
the GPU, in alternating order (ABC.. then ..CBA), so drift hits every contender alike; then one profiled step each
(torch.profiler, CUDA activity): the GPU busy time per step (union of kernel intervals) beside the wall time.
Memory: a sampler reads every worker's device memory through NVML per process every 20 ms (what nvidia-smi
shows, CUDA context included), plus torch's peak reserved/allocated from inside each worker.

The `ctx24` part: one contender at a time, alone, on an emulated 24 GiB card: the allocator is capped at 24 GiB minus
the process's measured CUDA context, r32 on all linear layers, batch 1; one step at each asked length.

usage (GPU machine; benchmarks/versus_wheels.sh builds the wheel sets, versus_device.sh installs them and runs this):
  python benchmarks/versus.py --configs c2,c1 --out $OUT --deadline-s 520
  python benchmarks/versus.py --configs c3,c4 --ctx24 qlorafit-plan:98304 --out $OUT --deadline-s 520
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

GIB = 1024**3
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
CONFIGS = {"c1": (2, 4, 512), "c2": (1, 1, 2048), "c3": (4, 1, 2048), "c4": (1, 1, 16384)}  # micro, accum, length
CONTENDERS = ("recipe", "trl", "trl-best", "unsloth", "qlorafit", "qlorafit-eager", "qlorafit-on", "qlorafit-prev", "qlorafit-offload",
              "qlorafit-lean", "qlorafit-tile", "qlorafit-graphs", "qlorafit-plan", "qlorafit-sidealloc",
              "qlorafit-wholegraph", "qlorafit-cudagraphs", "qlorafit-nographs", "qlorafit-liger",
              "qlorafit-maskattn", "qlorafit-compiledgraph")
SITES = {"trl": "/tmp/site-trl", "trl-best": "/tmp/site-trl", "unsloth": "/tmp/site-uns"}  # + /tmp/site-common
WARMUP = 2
VOCAB_IDS = int(os.environ.get("VERSUS_VOCAB_IDS", 128000))  # ids drawn below this (Llama-3: 128,256; smoke: tiny)


def rows_for(cfg: str, n: int):
    """The configuration's token rows: identical in every contender's process."""
    import torch
    b, acc, seq = CONFIGS[cfg] if cfg in CONFIGS else (1, 1, int(cfg))
    g = torch.Generator().manual_seed(1000 + seq + b)
    return torch.randint(0, VOCAB_IDS, (n, seq), generator=g)


# --- the worker: one contender, one configuration, one process ------------------------------------------------------

class Driver:
    """The worker's side of the protocol: commands on stdin, answers on a private copy of stdout (the libraries'
    own prints go to stderr, so they cannot corrupt the protocol)."""

    def __init__(self):
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def say(self, kind: str, **kw):
        self.out.write("@@ " + json.dumps({"kind": kind, **kw}) + "\n")

    def command(self) -> str:
        line = sys.stdin.readline()
        return line.strip() or "quit"


class Stop(Exception):
    pass


class Timer:
    """Times each step (device-synchronized) and, on 'prof', its GPU busy time."""

    def __init__(self, driver: Driver, tokens_per_step: int):
        self.d, self.tokens, self.warm, self.prof, self.cmd = driver, tokens_per_step, WARMUP, None, None
        self.t0 = 0.0
        self.outside_bytes = lambda: 0  # device memory the allocator does not hold (the qlorafit worker sets it)

    def begin(self):
        if self.warm > 0:
            self.cmd = "warm"
        else:
            if self.warm == 0:
                self.d.say("ready", mem=mem_stats())
                self.warm = -1
            self.cmd = self.d.command()
            if self.cmd == "quit":
                raise Stop
        if self.cmd == "prof":
            from torch.profiler import ProfilerActivity, profile
            self.prof = profile(activities=[ProfilerActivity.CUDA if CUDA else ProfilerActivity.CPU])
            self.prof.start()
        sync()
        self.t0 = time.perf_counter()

    def end(self, loss=None):
        sync()
        dt = time.perf_counter() - self.t0
        busy = None
        kinds = top = None
        if self.prof is not None:
            self.prof.stop()
            busy = busy_seconds(self.prof)
            kinds = kernel_kinds(self.prof)
            top = top_kernels(self.prof)
            self.prof = None
        if CAP:  # the emulated card: lower the cap if the context grew or the optimizer holds managed memory
            recap(self.outside_bytes())
        if self.cmd == "warm":
            self.warm -= 1
            self.d.say("warm", s=dt, mem=mem_stats(), cap=CAP.get("caps", [None])[-1], used=own_used_bytes())
            return
        self.d.say("step", cmd=self.cmd, s=dt, tokens=self.tokens, busy_s=busy, kinds_s=kinds, top=top, loss=loss)


CUDA = False  # set by start_cuda: the smoke test runs the same code on CPU


def sync():
    if CUDA:
        import torch
        torch.cuda.synchronize()


def busy_seconds(prof) -> float:
    """Union of the CUDA kernel and copy intervals of a profiled step (overlapping streams counted once)."""
    import torch
    ivs = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                 if e.device_type == torch.autograd.DeviceType.CUDA)
    total, cur_s, cur_e = 0.0, None, None
    for s, e in ivs:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total / 1e6  # us -> s


def kernel_kinds(prof) -> dict:
    """Seconds of GPU time per kind of kernel (step_probe.KINDS: matmul, dequantize, attention, loss, ...)."""
    import torch
    from step_probe import kind_of
    out = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            k = kind_of(e.name)
            out[k] = out.get(k, 0.0) + (e.time_range.end - e.time_range.start) / 1e6
    return {k: round(v, 5) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def top_kernels(prof, n: int = 25) -> list:
    """The n kernels with the most GPU time in a profiled step: [name (120 chars), calls, ms]."""
    import torch
    out = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            c = out.setdefault(e.name[:120], [0, 0.0])
            c[0] += 1
            c[1] += (e.time_range.end - e.time_range.start) / 1e3
    return [[k, c, round(ms, 2)] for k, (c, ms) in sorted(out.items(), key=lambda kv: -kv[1][1])[:n]]


def mem_stats() -> dict:
    import torch
    if not CUDA:
        return {}
    return {"peak_reserved": torch.cuda.max_memory_reserved(), "peak_allocated": torch.cuda.max_memory_allocated(),
            "reserved": torch.cuda.memory_reserved()}


def own_used_bytes() -> int | None:
    """This process's device memory as NVML sees it (what nvidia-smi lists for the pid)."""
    try:
        import pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            if p.pid == os.getpid():
                return p.usedGpuMemory
    except Exception:  # noqa: BLE001 - measurement only
        return None
    return None


CAP: dict = {}  # the emulated card (ctx24): its size, the largest context seen, what lives outside the allocator


def start_cuda(cap_gib: float) -> dict:
    """Create the CUDA context, measure it, and cap the allocator at cap_gib minus the context (0: no cap).

    With a cap, the context is measured after the kernels a QLoRA step touches (qlorafit's measure_context_bytes:
    bf16 matmul, sdpa and a 4-bit matmul, forward and backward), and `recap` lowers the cap again after every step
    if the context grew (lazily loaded kernels) or the optimizer keeps states in managed (paged) memory, which the
    allocator's cap does not see: an emulated N GiB card holds N GiB in all."""
    import torch
    global CUDA
    CUDA = torch.cuda.is_available()
    if not CUDA:
        return {"context_bytes": None, "cap_gib": None}
    torch.zeros(1, device="cuda")
    import torch.nn.functional as F  # cuBLAS handle and workspace: part of the context any training step has
    a = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
    F.linear(a, a)
    if cap_gib:
        from qlorafit.runtime.context import measure_context_bytes
        measure_context_bytes()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    used = own_used_bytes()
    ctx = (used - torch.cuda.memory_reserved()) if used else None
    if cap_gib:
        CAP.update(card=int(cap_gib * GIB), ctx=ctx if ctx is not None else 800 * 2**20, outside=0, caps=[])
        recap()
    torch.cuda.reset_peak_memory_stats()
    return {"context_bytes": ctx, "cap_gib": cap_gib or None}


def recap(outside_bytes: int = 0) -> None:
    """Cap the allocator at the card minus the largest context seen so far minus `outside_bytes` (managed memory)."""
    import torch
    used = own_used_bytes()
    if used:
        CAP["ctx"] = max(CAP["ctx"], used - torch.cuda.memory_reserved())
    CAP["outside"] = max(CAP["outside"], outside_bytes)
    cap = CAP["card"] - CAP["ctx"] - CAP["outside"]
    CAP["caps"].append({"cap": cap, "ctx": CAP["ctx"], "outside": CAP["outside"]})
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.mem_get_info()[1])
    if torch.cuda.memory_reserved() > cap:  # a card this size would have handed the cached blocks back by now
        torch.cuda.empty_cache()


def planned_paged_bytes(opt) -> int:
    """The managed memory a bitsandbytes paged optimizer will hold once its states exist: two states per parameter
    of >= 1e5 elements (smaller ones stay on the allocator), 1 byte each at 8 bits, 4 at 32."""
    if not getattr(opt, "is_paged", False):
        return 0
    bits = getattr(getattr(opt, "args", None), "optim_bits", 32)  # bitsandbytes keeps it in opt.args
    per = 2 * (1 if bits == 8 else 4)
    return sum(p.numel() * per for g in opt.param_groups for p in g["params"] if p.numel() >= 1e5)


def paged_state_bytes(opt) -> int:
    """Bytes of optimizer state in managed (paged) memory: bitsandbytes' paged optimizers mark those tensors."""
    return sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values()
               if getattr(t, "is_paged", False))


def hf_callback(timer: Timer):
    from transformers import TrainerCallback

    class Cb(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            timer.begin()

        def on_step_end(self, args, state, control, **kw):
            timer.end()
    return Cb()


def run_hf(trainer, timer: Timer):
    try:
        trainer.train()
    except Stop:
        pass


def DEVICE_MAP():
    return {"": 0} if CUDA else {"": "cpu"}


def hf_cpu() -> dict:
    """TrainingArguments for the CPU smoke test (no bf16 there); nothing on the GPU."""
    return {} if CUDA else {"use_cpu": True, "bf16": False}


def bnb_config():
    import torch
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=torch.bfloat16)


def lora_kw(a) -> dict:
    targets = "all-linear" if a.targets == "all-linear" else QKVO
    return {"r": a.rank, "lora_alpha": 2 * a.rank, "target_modules": targets}


def worker_recipe(a, path, rows, timer):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb_config(), device_map=DEVICE_MAP(),
                                                 dtype=torch.bfloat16)
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model)
    model = get_peft_model(model, LoraConfig(lora_dropout=0.05, bias="none", task_type="CAUSAL_LM", **lora_kw(a)))

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return {"input_ids": rows[i], "labels": rows[i], "attention_mask": torch.ones_like(rows[i])}

    b, acc = a.micro, a.accum
    args = TrainingArguments(output_dir="/tmp/vs-recipe", per_device_train_batch_size=b, gradient_accumulation_steps=acc,
                             gradient_checkpointing=True, optim="paged_adamw_32bit", learning_rate=2e-4,
                             max_grad_norm=0.3, lr_scheduler_type="constant", logging_steps=1000, save_strategy="no",
                             report_to=[], max_steps=100000, dataloader_num_workers=0, seed=0,
                             **{"bf16": True, **hf_cpu()})
    run_hf(Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[hf_callback(timer)]), timer)


def sft_dataset(rows):
    from datasets import Dataset
    return Dataset.from_dict({"input_ids": rows.tolist()})


def worker_trl(a, path, rows, timer, best: bool):
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb_config(), device_map=DEVICE_MAP(),
                                                 dtype=torch.bfloat16)
    extra = {}
    if best:
        extra["use_liger_kernel"] = True
        if a.seq >= 16384:
            extra["activation_offloading"] = True
    args = SFTConfig(output_dir="/tmp/vs-trl", per_device_train_batch_size=a.micro, gradient_accumulation_steps=a.accum,
                     max_length=a.seq, learning_rate=2e-4, lr_scheduler_type="constant", logging_steps=1000,
                     save_strategy="no", report_to=[], max_steps=100000, dataloader_num_workers=0, seed=0,
                     dataset_num_proc=1, **extra, **hf_cpu())
    peft = LoraConfig(lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **lora_kw(a))
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(rows), processing_class=tok,
                         peft_config=peft, callbacks=[hf_callback(timer)])
    run_hf(trainer, timer)


def worker_unsloth(a, path, rows, timer):
    import unsloth  # noqa: F401 - first, so it patches transformers and TRL before they are imported
    import torch
    from unsloth import FastLanguageModel
    from trl import SFTConfig, SFTTrainer

    model, tok = FastLanguageModel.from_pretrained(model_name=path, max_seq_length=a.seq, dtype=torch.bfloat16,
                                                   load_in_4bit=True, local_files_only=True)
    kw = lora_kw(a)
    if kw["target_modules"] == "all-linear":
        kw["target_modules"] = QKVO + ["gate_proj", "up_proj", "down_proj"]
    model = FastLanguageModel.get_peft_model(model, lora_dropout=0, bias="none", use_gradient_checkpointing="unsloth",
                                             random_state=0, max_seq_length=a.seq, **kw)
    args = SFTConfig(output_dir="/tmp/vs-uns", per_device_train_batch_size=a.micro, gradient_accumulation_steps=a.accum,
                     max_length=a.seq, learning_rate=2e-4, lr_scheduler_type="constant", logging_steps=1000,
                     save_strategy="no", report_to=[], max_steps=100000, dataloader_num_workers=0, seed=0,
                     optim="adamw_8bit", dataset_num_proc=1, packing=False, **hf_cpu())
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(rows), processing_class=tok,
                         callbacks=[hf_callback(timer)])
    run_hf(trainer, timer)


def qlorafit_cfg(a, path: str, variant: str):
    from qlorafit.core import config as C
    data = f"/tmp/vs-data-{os.getpid()}.jsonl"
    with open(data, "w") as f:
        for i in range(4):
            f.write(json.dumps({"text": "the model trains on tokens " * 8}) + "\n")
    raw = {"output_dir": f"/tmp/vs-qf-{variant}-{os.getpid()}",
           "model": {"name_or_path": path},
           "lora": {"r": a.rank, "alpha": 2 * a.rank, "dropout": 0.0,
                    "targets": ["all-linear"] if a.targets == "all-linear" else QKVO},
           "data": {"path": data, "max_seq_length": a.seq},
           "train": {"micro_batch_size": a.micro, "grad_accum": a.accum, "max_steps": 100000, "log_every": 1000}}
    if variant == "qlorafit-eager":
        raw["train"]["compile"] = False
    if variant in ("qlorafit-on", "qlorafit-prev"):  # layer inputs kept on the GPU
        raw["train"]["grad_checkpointing"] = "on"
    if variant in ("qlorafit-offload", "qlorafit-lean", "qlorafit-tile", "qlorafit-sidealloc"):  # inputs in host RAM
        raw["train"]["grad_checkpointing"] = "offload"
    if variant == "qlorafit-lean":  # and lm_head streamed from host RAM
        raw["model"]["offload_lm_head"] = True
    if variant == "qlorafit-cudagraphs":
        raw["train"]["cuda_graphs"] = "on"
    if variant == "qlorafit-nographs":  # compiled layers, no graphs (the default before session 8)
        raw["train"]["cuda_graphs"] = "off"
    if variant == "qlorafit-tile":  # and each layer's MLP on 4,096-position slices
        raw["train"]["mlp_tile_tokens"] = 4096
    if a.cfg == "ctx":
        raw["guard"] = {"enabled": False}  # an OOM is the answer "does not fit", not something to recover from
    cfg = C.from_dict(raw, variant)
    if variant == "qlorafit-plan":
        from qlorafit.core.plan import plan_config
        from qlorafit.core.shapes import shape_from_config
        from qlorafit.runtime.data import LengthStats
        shape = shape_from_config(json.load(open(os.path.join(path, "config.json"))), path)
        stats = LengthStats(count=a.micro * a.accum, max=a.seq, p99=a.seq, mean=float(a.seq))
        cfg = C.from_dict(C.to_dict(plan_config(cfg, shape, int(a.plan_budget_gib * GIB), stats)), "planned")
    return cfg


def estimate_of(cfg, path: str) -> dict:
    """qlorafit's own estimate of this run (H200 context figure), GiB: the peak, its phase and its components."""
    from qlorafit.core.estimate import estimate
    from qlorafit.core.setup import setup_from_config
    from qlorafit.core.shapes import shape_from_config
    shape = shape_from_config(json.load(open(os.path.join(path, "config.json"))), path)
    e = estimate(shape, setup_from_config(cfg))
    return {"peak_gib": round(e.peak_bytes / GIB, 3),
            "parts_gib": {c.name: round(c.bytes / GIB, 3) for c in e.components}}


def cuda_graphs_over_compiled_layers() -> None:
    """The qlorafit-graphs experiment (this worker process only): the compiled layers with mode="reduce-overhead"
    (Inductor's CUDA graph trees: each layer's forward and backward replayed as graphs, the host out of the step),
    and a new graph generation marked before every micro-batch, so a micro-batch never reads the outputs of the
    previous one's replay. qlorafit's runtime is unchanged; the defaults stay as measured above."""
    import functools
    import torch
    from qlorafit.runtime import step as S
    torch.compile = functools.partial(torch.compile, mode="reduce-overhead")  # compile_layers and Module.compile
    inner = S._forward_backward

    def forward_backward(*args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return inner(*args, **kwargs)
    S._forward_backward = forward_backward


def compile_as_before_down_proj_skip() -> None:
    """The qlorafit-prev experiment (this worker process only): layers compiled as before the frozen down_proj left
    the compiled region (session 6): with plain checkpointing the whole layer compiled (transformers' checkpoint
    traced into its graph); with offload the inner forward compiled, recomputed whole in backward."""
    from qlorafit.runtime import model as M
    from qlorafit.runtime.offload import active_handle
    new = M.compile_layers
    M._mlp_output_projection_eager = lambda layer: None

    def compile_layers(model, backend="inductor"):
        if active_handle(model) is not None:
            return new(model, backend)
        layers = model.get_base_model().model.layers
        for layer in layers:
            layer.compile(backend=backend)
        return len(layers)
    M.compile_layers = compile_layers


def fetch_on_the_side_stream_as_before() -> None:
    """The qlorafit-sidealloc experiment (this worker process only): offload's fetched layer inputs allocated on the
    side stream, as before session 7 (the caching allocator then keeps their blocks in the side stream's pool)."""
    import torch
    from qlorafit.runtime.offload import OffloadHandle

    new_fetch, new_take = OffloadHandle._fetch, OffloadHandle._take

    def _fetch(self, p, prefetch):
        if p.device.type == "cpu":  # the embedding's output, when the embedding is in host RAM
            return new_fetch(self, p, prefetch)
        side = self._side_stream(p.device)
        with torch.cuda.stream(side):
            p.fetched = torch.empty(p.host.shape, dtype=p.host.dtype, device=p.device)
            p.fetched.copy_(p.host, non_blocking=True)
            p.ready = torch.cuda.Event()
            p.ready.record(side)

    def _take(self, p):
        if p.device.type == "cpu":
            return new_take(self, p)
        out, p.fetched = p.fetched, None
        compute = torch.cuda.current_stream(p.device)
        compute.wait_event(p.ready)
        out.record_stream(compute)
        return out
    OffloadHandle._fetch, OffloadHandle._take = _fetch, _take


def whole_micro_batch_graphs(ctx) -> None:
    """The qlorafit-wholegraph experiment (this worker process only): after two eager passes of a micro-batch shape
    (compile, autotune), its forward + backward is captured as one CUDA graph (torch.cuda.graph) and replayed with
    the inputs copied into static buffers, so the host launches nothing per layer. What that needs here:
    gradients stay allocated across steps (zero_grad fills zeros, so the captured backward accumulates into the same
    tensors), and the loss takes every position (these rows have no ignored labels; the nonzero() that drops ignored
    positions is a host sync, which a capture cannot hold); the embedding (in host RAM) runs before the graph, which
    starts at its output. A failed capture is printed and that shape runs eagerly."""
    import contextlib

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from qlorafit.runtime import loss as L
    from qlorafit.runtime import step as S

    def target_hidden(base, batch):
        hidden = base.model(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state
        h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        return h, batch["labels"][:, 1:].reshape(-1), getattr(base.config.get_text_config(), "final_logit_softcapping",
                                                                None)
    L.target_hidden = target_hidden
    zero = ctx.optimizer.zero_grad
    ctx.optimizer.zero_grad = lambda set_to_none=True: zero(set_to_none=False)
    inner, graphs, seen = S._forward_backward, {}, {}

    def once(static, denom):
        with S._autocast(ctx):
            loss_sum, _ = L.forward_loss(ctx.model, static, ctx.cfg.train.loss_impl)
        ctx.scaler.scale(loss_sum / denom).backward()
        return loss_sum.detach()

    embed = ctx.model.get_base_model().get_input_embeddings()

    def graph_inputs(units):
        """The embedding runs outside the graph (qlorafit keeps it in host RAM: a host gather, then a copy up);
        the graph starts at its output. No attention mask: these rows are full, and a mask costs a host check."""
        b = S._batch(ctx, units)
        with torch.no_grad():
            e = embed(b["input_ids"])
        return {"inputs_embeds": e.to(ctx.device), "labels": b["labels"]}

    def forward_backward(ctx_, units, denom, step, micro_index):
        batch = graph_inputs(units)
        key = (tuple((k, tuple(v.shape), str(v.dtype)) for k, v in batch.items() if isinstance(v, torch.Tensor)),
               denom)
        got = graphs.get(key)
        if got is None:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] < 2 or any(p.grad is None for p in ctx.params):
                return inner(ctx_, units, denom, step, micro_index)
            static = {k: v.detach().to(ctx.device).clone() if isinstance(v, torch.Tensor) else v
                      for k, v in batch.items()}  # detached: PEFT's input hook marks the embedding output
            saved = [p.grad.clone() for p in ctx.params]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                once(static, denom)  # the warm-up pass on a side stream that capture wants
            torch.cuda.current_stream().wait_stream(side)
            ops = []  # the last aten ops before a failed capture, to name what invalidated it

            class Log(TorchDispatchMode):
                def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                    ops.append(str(func))
                    del ops[:-40]
                    return func(*args, **(kwargs or {}))
            # thread_local: an unsafe CUDA call from another thread (a pin-memory or monitor thread) is allowed.
            # The first capture fails in session 7's probe: dynamo recompiles the layer inside it (at sdpa); the
            # second, with the recompiled graph cached, succeeds. A last try logs the aten ops, to name a failure.
            for logged in (False, False, True):
                graph = torch.cuda.CUDAGraph()
                t0 = time.perf_counter()
                try:
                    with torch.cuda.graph(graph, capture_error_mode="thread_local"), \
                            (Log() if logged else contextlib.nullcontext()):
                        out = once(static, denom)
                    got = graphs[key] = (graph, static, out)
                    print(f"captured {key[0]} in {time.perf_counter() - t0:.1f}s (ops logged: {logged})",
                          file=sys.stderr, flush=True)
                    break
                except Exception as e:  # noqa: BLE001 - the experiment reports it and runs eagerly
                    print(f"capture failed for {key[0]} (ops logged: {logged}): {e!r}"[:1500], file=sys.stderr,
                          flush=True)
                    import traceback
                    print("the last ops: " + " ".join(ops), file=sys.stderr, flush=True)
                    print("".join(traceback.format_exc().splitlines(True)[-24:]), file=sys.stderr, flush=True)
                    graphs[key] = "eager"
                    torch.cuda.synchronize()
            for p, g0 in zip(ctx.params, saved):  # the warm-up pass added to the gradients: undo it
                p.grad.copy_(g0)
            del saved
            if got is None:
                return inner(ctx_, units, denom, step, micro_index)
        if got == "eager":
            return inner(ctx_, units, denom, step, micro_index)
        graph, static, out = got
        with torch.no_grad():
            for k, v in batch.items():
                if isinstance(v, torch.Tensor):
                    static[k].copy_(v, non_blocking=True)
        graph.replay()
        return out.clone(), None
    S._forward_backward = forward_backward


def worker_qlorafit(a, path, rows, timer, variant: str, drv: Driver):
    import torch
    from qlorafit.core import config as C
    from qlorafit.runtime.data import Sample
    from qlorafit.runtime.step import train_step
    from qlorafit.runtime.train import setup

    if variant == "qlorafit-maskattn":  # transformers' own attention in the graphed pass, as before session 9
        from qlorafit.runtime import graphs as GR
        GR.causal_only = lambda config: False
    if variant == "qlorafit-compiledgraph":  # the layers compiled inside the graphs, instead of liger's fusions
        from qlorafit.runtime import model as QM
        QM.fuse_with_liger = lambda model: QM.compile_layers(model, tail_outside=False) > 0
    if variant == "qlorafit-graphs":
        cuda_graphs_over_compiled_layers()
    if variant == "qlorafit-prev":
        compile_as_before_down_proj_skip()
    if variant == "qlorafit-sidealloc":
        fetch_on_the_side_stream_as_before()
    cfg = qlorafit_cfg(a, path, variant)
    drv.say("config", config=C.to_dict(cfg)["train"], model=C.to_dict(cfg)["model"], estimate=estimate_of(cfg, path))
    run = setup(cfg, overwrite=True, quiet=True)
    timer.outside_bytes = lambda: paged_state_bytes(run.ctx.optimizer)
    if variant == "qlorafit-wholegraph":
        whole_micro_batch_graphs(run.ctx)
    if variant == "qlorafit-liger":  # the experiment: liger's Triton RMSNorm, RoPE and SwiGLU in the (uncompiled,
        # graphed) layers, before the first step; qlorafit's own loss stays
        from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance
        _apply_liger_kernel_to_instance(run.ctx.model.get_base_model(), rope=True, rms_norm=True, swiglu=True,
                                        cross_entropy=False, fused_linear_cross_entropy=False)
    if CAP:  # the paged states appear in the first optimizer step: keep their room from the start
        recap(planned_paged_bytes(run.ctx.optimizer))
    eff = cfg.train.micro_batch_size * cfg.train.grad_accum
    samples = [Sample(i, r.tolist(), r.tolist(), len(r)) for i, r in enumerate(rows)]
    step = 0
    try:
        while True:
            units = [samples[(step * eff + j) % len(samples)] for j in range(eff)]
            timer.begin()
            res = train_step(run.ctx, units, step + 1)
            step += 1
            timer.end(res.loss)
            if res.recoveries:
                print(f"guard recovered {res.recoveries}x", file=sys.stderr, flush=True)
            g = run.ctx.graphs
            if g is not None and g.checks and step == 8:  # each capture's check against the eager pass
                print(f"{variant} {a.cfg}: graphs {len(g.graphs)} captured {g.captures} disabled {g.disabled} "
                      f"checks {json.dumps(g.checks)}", file=sys.stderr, flush=True)
    except Stop:
        pass
    sync()


def worker(a):
    drv = Driver()
    info = start_cuda(a.cap_gib)
    import torch
    from gpu_common import build_model
    if not a.contender.startswith("qlorafit"):
        os.environ.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    path = build_model(a.model)
    n = max(a.micro * a.accum * 4, 8) if a.seq <= 4096 else 2
    rows = rows_for(str(a.seq) if a.cfg == "ctx" else a.cfg, n)
    timer = Timer(drv, a.micro * a.accum * a.seq)
    drv.say("start", **info)
    t0 = time.time()
    try:
        c = a.contender
        if c == "recipe":
            worker_recipe(a, path, rows, timer)
        elif c in ("trl", "trl-best"):
            worker_trl(a, path, rows, timer, best=c == "trl-best")
        elif c == "unsloth":
            worker_unsloth(a, path, rows, timer)
        else:
            worker_qlorafit(a, path, rows, timer, c, drv)
    except torch.OutOfMemoryError as e:  # the ctx24 answer "does not fit"; elsewhere a failure
        drv.say("oom", error=str(e).splitlines()[0][:300], mem=mem_stats())
        return
    drv.say("end", mem=mem_stats(), used=own_used_bytes(), wall_s=time.time() - t0)


# --- the coordinator -------------------------------------------------------------------------------------------------

class Proc:
    def __init__(self, contender: str, cfg: str, a, log, extra: list):
        b, acc, seq = CONFIGS[cfg] if cfg in CONFIGS else (1, 1, int(extra[extra.index("--seq") + 1]))
        env = dict(os.environ)
        env.pop("PYTORCH_CUDA_ALLOC_CONF", None)  # each stack's own allocator default
        if contender.startswith("qlorafit"):  # what qlorafit's setup sets, here before the worker's CUDA init
            env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
        site = [SITES[contender]] if contender in SITES else []
        env["PYTHONPATH"] = ":".join(site + ["/tmp/site-common", os.path.join(HERE, "..", "src"), HERE])
        env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   UNSLOTH_DISABLE_STATISTICS="1", TOKENIZERS_PARALLELISM="false")
        cmd = [sys.executable, __file__, "--worker", "--contender", contender, "--cfg", cfg, "--model", a.model,
               "--micro", str(b), "--accum", str(acc), "--seq", str(seq),
               "--plan-budget-gib", str(a.plan_budget_gib)] + extra
        self.name, self.cfg, self.tokens = contender, cfg, b * acc * seq
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                  bufsize=1)
        self.msgs, self.steps, self.dead, self.used_peak, self.used_load = [], [], None, 0, 0
        self.ready = False

    def read(self, kinds=("ready", "step", "end", "oom")) -> dict | None:
        """The next protocol message of one of `kinds`; None when the process ended."""
        while True:
            line = self.p.stdout.readline()
            if not line:
                self.dead = self.dead or f"exit {self.p.wait()}"
                return None
            if not line.startswith("@@ "):
                continue
            m = json.loads(line[3:])
            self.msgs.append(m)
            if m["kind"] == "oom":
                self.dead = "oom: " + m["error"]
                return m
            if m["kind"] in kinds:
                return m

    def send(self, cmd: str) -> None:
        try:
            self.p.stdin.write(cmd + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            self.dead = self.dead or "pipe closed"

    def finish(self, timeout: float = 60) -> dict | None:
        if self.dead is None:
            self.send("quit")
            m = self.read(("end", "oom"))
        else:
            m = None
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
        return m


class Sampler(threading.Thread):
    """Peak device memory per worker pid through NVML (context included)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.procs, self.stop, self.ok = [], threading.Event(), False

    def run(self):
        try:
            import pynvml
            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001
            return
        while not self.stop.is_set():
            try:
                used = {p.pid: p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}
            except Exception:  # noqa: BLE001
                used = {}
            for pr in list(self.procs):
                u = used.get(pr.p.pid, 0)
                if u:
                    self.ok = True
                if pr.ready:
                    pr.used_peak = max(pr.used_peak, u)
                else:
                    pr.used_load = max(pr.used_load, u)
            time.sleep(0.02)


def summarize(pr: Proc, end: dict | None) -> dict:
    timed = [m for m in pr.msgs if m["kind"] == "step" and m["cmd"] == "step"]
    prof = [m for m in pr.msgs if m["kind"] == "step" and m["cmd"] == "prof"]
    tps = sorted(pr.tokens / m["s"] for m in timed)
    start = next((m for m in pr.msgs if m["kind"] == "start"), {})
    ready = next((m for m in pr.msgs if m["kind"] == "ready"), {})
    conf = next((m for m in pr.msgs if m["kind"] == "config"), None)
    rec = {"contender": pr.name, "config": pr.cfg, "tokens_per_step": pr.tokens, "error": pr.dead,
           "tokens_per_s": [round(x, 1) for x in tps],
           "tokens_per_s_median": round(statistics.median(tps), 1) if tps else None,
           "step_s": [round(m["s"], 4) for m in timed],
           "prof_step_s": prof[0]["s"] if prof else None, "gpu_busy_s": prof[0]["busy_s"] if prof else None,
           "gpu_kinds_s": prof[0].get("kinds_s") if prof else None,
           "top_kernels": prof[0].get("top") if prof else None,
           "losses": [m.get("loss") for m in timed],
           "used_peak_steps": pr.used_peak or None, "used_peak_load_warmup": pr.used_load or None,
           "context_bytes": start.get("context_bytes"), "cap_gib": start.get("cap_gib"),
           "mem_at_ready": ready.get("mem"), "mem_at_end": (end or {}).get("mem"),
           "qlorafit_config": conf}
    return rec


def fmt(rec: dict) -> str:
    t = rec["tokens_per_s"]
    spread = f"[{t[0]:,.0f}-{t[-1]:,.0f}]" if t else ""
    used = max(rec["used_peak_steps"] or 0, rec["used_peak_load_warmup"] or 0)
    busy = rec["gpu_busy_s"]
    prof = rec["prof_step_s"]
    gb = f"busy {busy * 1e3:.0f}/{prof * 1e3:.0f} ms" if busy else ""
    med = f"{rec['tokens_per_s_median']:,.0f}" if rec["tokens_per_s_median"] else "-"
    return (f"{rec['config']:>4} {rec['contender']:<15} {med:>7} tok/s {spread:<15} used {used / GIB:5.2f} GiB "
            f"(steps {((rec['used_peak_steps'] or 0) / GIB):5.2f}) {gb} {rec['error'] or ''}")


def run_config(cfg: str, contenders: list, a, log, sampler, out_path, extra=()) -> list:
    print(f"== {cfg} {CONFIGS.get(cfg)}: {', '.join(contenders)}", flush=True)
    procs = [Proc(c, cfg, a, log, list(extra)) for c in contenders]
    sampler.procs = procs
    for pr in procs:  # all load and warm up in parallel
        m = pr.read(("ready",))
        pr.ready = m is not None and m["kind"] == "ready"
    live = [pr for pr in procs if pr.ready]
    t_rounds = time.time()
    for r in range(a.rounds + 1):
        order = live if r % 2 == 0 else live[::-1]
        cmd = "prof" if r == a.rounds else "step"
        for pr in order:
            if pr.dead:
                continue
            pr.send(cmd)
            pr.read(("step",))
    print(f"   rounds took {time.time() - t_rounds:.0f}s", flush=True)
    recs = []
    for pr in procs:
        end = pr.finish()
        rec = summarize(pr, end)
        rec["sampler_ok"] = sampler.ok
        recs.append(rec)
        with open(out_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(fmt(rec), flush=True)
    sampler.procs = []
    return recs


def run_ctx24(specs: list, a, log, sampler, out_path, deadline):
    """name:length[:length...] -> one fresh capped process per (contender, length), alone on the GPU.

    A length fits when both warm-up steps ran (the second with the optimizer states alive) and the process never
    held more than the card: NVML's figure for the pid (context included) and the allocator's peak reserved plus
    the largest context seen plus managed memory, each <= 24 GiB. With --ctx24-first-fit the lengths are tried in
    the order given (longest first) and the rest of a spec is skipped once one fits."""
    card = 24 * GIB
    for spec in specs:
        name, *lengths = spec.split(":")
        fitted = False
        for length in lengths:
            if fitted and a.ctx24_first_fit:
                print(f"ctx24 {name} {length}: skipped (a longer length fitted)", flush=True)
                continue
            if time.time() > deadline:
                print(f"ctx24 {name} {length}: skipped (deadline)", flush=True)
                continue
            extra = ["--seq", length, "--cap-gib", "24", "--rank", "32", "--targets", "all-linear",
                     "--plan-budget-gib", "24"]
            pr = Proc(name, "ctx", a, log, extra)
            pr.tokens = int(length)
            sampler.procs = [pr]
            m = pr.read(("ready",))
            pr.ready = m is not None and m["kind"] == "ready"
            end = pr.finish(120)  # the two warm-up steps fitted (the second holds the optimizer states): done
            rec = summarize(pr, end)
            warm = [m for m in pr.msgs if m["kind"] == "warm"]
            nvml_peak = max(pr.used_peak, pr.used_load) or None
            caps = [m.get("cap") for m in warm if m.get("cap")]
            alloc_view = None
            if warm and caps:
                alloc_view = warm[-1]["mem"]["peak_reserved"] + caps[-1]["ctx"] + caps[-1]["outside"]
            within = (nvml_peak is None or nvml_peak <= card) and (alloc_view is None or alloc_view <= card)
            rec.update(part="ctx24", length=int(length), ran=pr.ready and not pr.dead,
                       fits=pr.ready and not pr.dead and within, nvml_peak_gib=nvml_peak and round(nvml_peak / GIB, 3),
                       reserved_ctx_managed_gib=alloc_view and round(alloc_view / GIB, 3), caps=caps,
                       warm_step_s=[m["s"] for m in warm], warm_mem=[m.get("mem") for m in warm],
                       tokens_per_s_second_step=round(int(length) / warm[1]["s"], 1) if len(warm) > 1 else None)
            fitted = fitted or rec["fits"]
            with open(out_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"ctx24 {name} {length}: {'fits' if rec['fits'] else 'does not fit'}; " + fmt(rec), flush=True)
            sampler.procs = []


def provenance_rec(a) -> dict:
    vers = {}
    for site, names in (("/tmp/site-trl", ["trl"]), ("/tmp/site-uns", ["trl", "unsloth", "unsloth_zoo"]),
                        ("/tmp/site-common", ["bitsandbytes", "liger_kernel", "datasets"])):
        for n in names:
            hits = [d for d in os.listdir(site) if d.startswith(n + "-") and d.endswith(".dist-info")] \
                if os.path.isdir(site) else []
            vers[f"{n}@{os.path.basename(site)}"] = hits[0][len(n) + 1:-len(".dist-info")] if hits else None
    import torch
    import transformers
    import peft
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        smi = None
    return {"part": "provenance", "nvidia_smi": smi, "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "peft": peft.__version__, "packages": vers,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="c2,c1")
    ap.add_argument("--contenders", default="recipe,trl,trl-best,unsloth,qlorafit,qlorafit-plan")
    ap.add_argument("--skip", default="", help="config:contender pairs left out, e.g. c4:recipe")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--out", help="folder for versus.jsonl and workers.log (coordinator)")
    ap.add_argument("--deadline-s", type=float, default=540)
    ap.add_argument("--ctx24", default="", help="name:len[:len],... on an emulated 24 GiB card, after the configs")
    ap.add_argument("--plan-budget-gib", type=float, default=24.0)
    ap.add_argument("--ctx24-first", action="store_true", help="run the ctx24 part before the configurations")
    ap.add_argument("--ctx24-first-fit", action="store_true",
                    help="per ctx24 spec, stop at the first length that fits (give them longest first)")
    # worker side
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--contender")
    ap.add_argument("--cfg")
    ap.add_argument("--micro", type=int)
    ap.add_argument("--accum", type=int)
    ap.add_argument("--seq", type=int)
    ap.add_argument("--cap-gib", type=float, default=0.0)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--targets", default="qkvo")
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return
    t_start = time.time()
    deadline = t_start + a.deadline_s
    os.makedirs(a.out, exist_ok=True)
    out_path = os.path.join(a.out, "versus.jsonl")
    with open(out_path, "a") as f:
        f.write(json.dumps(provenance_rec(a)) + "\n")
    sub = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); from gpu_common import "
                          "build_model; from bench import with_tokenizer; with_tokenizer(build_model(%r))"
                          % (HERE, a.model)], env={**os.environ, "PYTHONPATH": f"/tmp/site-common:{HERE}/../src:{HERE}"})
    if sub.returncode:
        sys.exit("model build failed")
    print(f"model ready after {time.time() - t_start:.0f}s", flush=True)
    sampler = Sampler()
    sampler.start()
    skip = set(a.skip.split(",")) if a.skip else set()
    log = open(os.path.join(a.out, "workers.log"), "a")
    per_cfg_s = {"c1": 120, "c2": 70, "c3": 100, "c4": 110}
    if a.ctx24 and a.ctx24_first:
        run_ctx24(a.ctx24.split(","), a, log, sampler, out_path, deadline)
    for cfg in a.configs.split(","):
        if not cfg:
            continue
        if time.time() + per_cfg_s.get(cfg, 120) > deadline:
            print(f"== {cfg}: skipped (deadline)", flush=True)
            continue
        contenders = [c for c in a.contenders.split(",") if f"{cfg}:{c}" not in skip]
        recs = run_config(cfg, contenders, a, log, sampler, out_path)
        if not any(r["tokens_per_s"] for r in recs):
            sys.exit("no contender ran: see workers.log")  # a broken install: stop before spending more device time
    if a.ctx24 and not a.ctx24_first:
        run_ctx24(a.ctx24.split(","), a, log, sampler, out_path, deadline - 90)
    sampler.stop.set()
    print(f"total {time.time() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
