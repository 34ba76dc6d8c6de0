"""Loading the base model in 4 bit and attaching LoRA: the memory decisions of qlorafit's own stack.

Differences from the usual recipe (from_pretrained + prepare_model_for_kbit_training + get_peft_model), each a
memory decision:
  - no fp32 upcast of the embedding, lm_head and norms (prepare_model_for_kbit_training's, ~2 GiB on Llama-3-8B);
  - non-reentrant gradient checkpointing, so no `enable_input_require_grads` hook on the embedding is needed;
  - use_cache=False: no KV cache is built while training;
  - optionally the input embedding stays in host RAM (`offload_embedding`), saving vocab x hidden x 2 bytes;
  - optionally lm_head's weight stays in host RAM too (`offload_lm_head`), streamed through the GPU by the loss.
"""

import functools
import logging
import sys
import types
import warnings
from dataclasses import dataclass

import torch

from qlorafit.core import options as O
from qlorafit.core.config import Config
from qlorafit.errors import UserError
from qlorafit.runtime.guard import apply_checkpointing


def torch_dtype(name: str) -> torch.dtype:
    """'bf16' -> torch.bfloat16, from the dtype's spec (qlorafit.core.options)."""
    return getattr(torch, O.dtype(name).torch_name)


def resolve_compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> bf16 where the device supports it, fp16 (with a warning) on older GPUs."""
    if name != "auto":
        return torch_dtype(name)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        warnings.warn("this GPU has no bf16: computing in fp16, which overflows more easily; "
                      "if the loss turns NaN, lower the learning rate or train.max_grad_norm", stacklevel=2)
        return torch.float16
    return torch.bfloat16


def bnb_config(cfg: Config, dtype: torch.dtype, quant_storage: torch.dtype = torch.uint8):
    """quant_storage: the dtype the packed 4-bit bytes are stored as. uint8 by default; FSDP needs the dtype of the
    model's other weights (bf16), so that one flat all-gather buffer holds a whole layer."""
    from transformers import BitsAndBytesConfig

    m, bits = cfg.model, O.quant(cfg.model.quant).bits
    if bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=m.quant,
                                  bnb_4bit_use_double_quant=m.double_quant, bnb_4bit_compute_dtype=dtype,
                                  bnb_4bit_quant_storage=quant_storage)
    return BitsAndBytesConfig(load_in_8bit=True) if bits == 8 else None


@dataclass
class Loaded:
    model: object          # the PEFT model
    dtype: torch.dtype     # compute dtype
    device: torch.device   # where the first layer runs
    offload: object = None  # qlorafit.runtime.offload.OffloadHandle when grad_checkpointing=offload (host byte counters)


def load_base(cfg: Config, path: str, device: torch.device, quant_storage: torch.dtype = torch.uint8):
    """from_pretrained with the bitsandbytes config; errors name the path."""
    from transformers import AutoModelForCausalLM

    dtype = resolve_compute_dtype(cfg.model.compute_dtype, device)
    kw = dict(dtype=dtype, quantization_config=bnb_config(cfg, dtype, quant_storage),
              attn_implementation=O.attention(cfg.model.attn_impl).hf, trust_remote_code=cfg.model.trust_remote_code,
              low_cpu_mem_usage=True)
    host = {}
    if device.type == "cuda":
        single = cfg.model.device_map == "auto" and not cfg.model.max_memory
        if single:
            host = host_ram_modules(cfg, path, device.index or 0)
        kw["device_map"] = (host or {"": device.index or 0}) if single else cfg.model.device_map
        if cfg.model.max_memory:
            kw["max_memory"] = dict(cfg.model.max_memory)
        if host and kw["quantization_config"] is not None:
            # transformers refuses "cpu" entries next to a GPU unless told the CPU modules stay unquantized (they
            # are the 16-bit embedding and lm_head, which bitsandbytes never quantizes anyway)
            kw["quantization_config"].llm_int8_enable_fp32_cpu_offload = True
    elif kw["quantization_config"] is not None:
        kw["device_map"] = {"": "cpu"}  # bitsandbytes 4-bit also runs on CPU (slowly): the offline demo and tests
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kw)
    except OSError as e:
        raise UserError(f"model.name_or_path: cannot load {path}: {str(e).splitlines()[0]}") from None
    if host:
        # a device map with "cpu" in it makes transformers hand the model to accelerate's dispatch, which moves
        # those weights out (meta) and back in on every forward. qlorafit's own levers (apply_memory_levers) run
        # those modules instead: take the hooks off, which puts the real host-RAM weights back in place
        from accelerate.hooks import remove_hook_from_module

        remove_hook_from_module(model, recurse=True)
        # taking the hooks off restores each module's weights on its own: a tied embedding and lm_head come back as
        # two copies of the one matrix. Tie them again (one matrix in host RAM, as the checkpoint has it)
        model.tie_weights()
    model.config.use_cache = False  # the KV cache only serves generation; training would just hold it
    # PEFT copies model.name_or_path into adapter_config.json; transformers sets it (and the config's) to `path`
    model.name_or_path = model.config._name_or_path = recorded_name(cfg.model.name_or_path, path)
    return model, dtype


def recorded_name(name: str, path: str) -> str:
    """What the adapter records as its base (adapter_config.json's base_model_name_or_path): the Hub id for a Hub id
    or catalogue name, not the snapshot path of this machine's cache (`merge --base ID` then matches on any
    machine); a local directory, or the demo model's, as it is.

    >>> recorded_name("qwen3-8b", "/cache/models--Qwen--Qwen3-8B/snapshots/abc"), recorded_name("./m", "./m")
    ('Qwen/Qwen3-8B', './m')
    """
    from qlorafit import hub
    from qlorafit.core.catalog import hub_id_of
    from qlorafit.demo_assets import DEMO_MODEL

    if name == DEMO_MODEL:  # built on this machine, never on the Hub: its directory
        return path
    if hub_id_of(name):
        return hub_id_of(name)
    return name.strip() if hub.looks_like_hub_id(name) else path


def host_ram_modules(cfg: Config, path: str, gpu: int = 0) -> dict:
    """A device_map that loads the 16-bit matrices model.offload_embedding and model.offload_lm_head keep in host RAM
    straight there ("cpu"), and every other module on GPU `gpu`, so those matrices never pass through the GPU:
    loading then peaks at the quantized layers, not at the whole 16-bit model (-2 x vocab x hidden x 2 bytes, 2 GiB
    on Llama-3-8B). {} when neither lever is on (or the model's layout is unusual): load everything on the GPU.

    The map names the sibling modules explicitly, never "": accelerate's dispatch gives a "" entry a hook that
    first pulls every submodule, the host ones included, onto the GPU. The names come from the model built on the
    meta device (no memory). A tied embedding goes to the host only with the head (offload_lm_head);
    offload_embedding alone leaves it on the GPU, as qlorafit.runtime.offload does.
    """
    m = cfg.model
    if not (m.offload_embedding or m.offload_lm_head):
        return {}
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        conf = AutoConfig.from_pretrained(path, trust_remote_code=m.trust_remote_code)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(conf, trust_remote_code=m.trust_remote_code)
    except (OSError, ValueError):
        return {}  # from_pretrained reports the problem with the path
    names = {id(mod): name for name, mod in skeleton.named_modules()}
    emb, head = skeleton.get_input_embeddings(), skeleton.get_output_embeddings()
    tied = head is not None and getattr(head, "weight", None) is emb.weight
    host = set()
    if m.offload_lm_head and head is not None:
        host.add(names[id(head)])
    if (m.offload_embedding and not tied) or (m.offload_lm_head and tied):
        host.add(names[id(emb)])
    if not host:
        return {}
    device_map = {}

    def place(prefix: str, module) -> bool:
        if next(module.parameters(recurse=False), None) is not None or next(module.buffers(recurse=False), None) \
                is not None:
            return False  # tensors held by a module on the path to a host module: no clean split
        for name, child in module.named_children():
            full = prefix + name
            if full in host:
                device_map[full] = "cpu"
            elif any(h.startswith(full + ".") for h in host):
                if not place(full + ".", child):
                    return False
            else:
                device_map[full] = gpu
        return True

    return device_map if place("", skeleton) else {}


def freeze_and_cast(model, cfg: Config) -> None:
    """Freeze the base. The hf recipe upcasts here; qlorafit only does when asked (upcast_embeddings)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.model.upcast_embeddings:  # +vocab x hidden x 2 bytes per matrix: the recipe's 2 GiB on Llama-3-8B
        model.get_input_embeddings().to(torch.float32)
        model.get_output_embeddings().to(torch.float32)


def attach_lora(model, cfg: Config):
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model

    lc = cfg.lora
    if lc.resume_adapter:
        return PeftModel.from_pretrained(model, lc.resume_adapter, is_trainable=True)
    targets = lora_target_modules(model, list(lc.targets))
    pc = PeftLoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=targets,
                        modules_to_save=list(lc.modules_to_save) or None, bias="none", task_type="CAUSAL_LM")
    dtype = torch_dtype(lc.dtype)
    try:
        peft_model = get_peft_model(model, pc, autocast_adapter_dtype=dtype == torch.float32)
    except ValueError as e:
        raise UserError(f"lora.targets: {e}") from None
    if dtype != torch.float32:
        for n, p in peft_model.named_parameters():
            if p.requires_grad:
                p.data = p.data.to(dtype)
    return peft_model


def lora_target_modules(model, targets: list[str]):
    """What PEFT gets as target_modules: the names as given on a dense model; on a MoE model, the full names of the
    nn.Linear modules (4-bit) that the targets name.

    LoRA never goes on a MoE model's routed experts or router in qlorafit. transformers 5 stores the experts as fused
    3-D parameters, and PEFT 0.21 wraps those (ParamWrapper) whenever the targets say 'all-linear' or an MLP name: on
    Qwen3-30B-A3B at r=16 that is ~1 B trainable parameters (~15 GiB of weights, gradients and Adam states), it
    refuses lora_dropout > 0, and qlorafit's estimate would not match. Attention (and a shared expert's linears, where
    the model has one) get the adapters; docs/moe.md says why and what it costs.
    """
    if not any(p.ndim == 3 for n, p in model.named_parameters() if ".experts." in n):
        return "all-linear" if targets == ["all-linear"] else targets
    from qlorafit.core.shapes import LORA_TARGET_ALIASES

    want = set(targets)
    for t in targets:
        want |= set(LORA_TARGET_ALIASES.get(t, ())) | {f for f, parts in LORA_TARGET_ALIASES.items() if t in parts}
    names = [n for n, m in model.named_modules()  # bitsandbytes' Linear4bit / Linear8bitLt are nn.Linear too
             if isinstance(m, torch.nn.Linear) and ".experts" not in n and not n.endswith("lm_head")
             and (targets == ["all-linear"] or n.rsplit(".", 1)[-1] in want)]
    if not names:
        raise UserError(f"lora.targets: {targets} name no linear module of this mixture-of-experts model: its routed "
                        f"experts are fused 3-D parameters, which qlorafit does not adapt (docs/moe.md); use the "
                        f"attention projections (q_proj, k_proj, v_proj, o_proj) or all-linear")
    return names


def apply_memory_levers(model, cfg: Config, device: torch.device):
    """The levers that move memory to host RAM once the model is built. Returns the offload handle, or None.

    The loss lever (train.loss_impl) needs no setup: qlorafit.runtime.loss.forward_loss picks it per step.
    """
    from qlorafit.runtime.offload import enable_offloaded_checkpointing, offload_embedding, offload_lm_head

    if cfg.model.offload_lm_head:
        # -vocab x hidden x 2 bytes of GPU memory (1 GiB on Llama-3-8B), +2 slice buffers (2 x 64 MiB) and the
        # online-softmax state (N x hidden x 4) in the loss, +1 host->GPU copy of the whole head per forward.
        # Tied models: the lookup moves to the host too, so the one shared matrix leaves the GPU
        loss = O.loss(cfg.train.loss_impl)
        if loss.builder or not loss.chunked:  # the streamed loss is chunked without a kernel: another choice is moot
            warnings.warn(f"model.offload_lm_head: the loss streams lm_head from host RAM; train.loss_impl="
                          f"{cfg.train.loss_impl} does not apply", stacklevel=2)
        offload_lm_head(model, device)
    if cfg.model.offload_embedding:
        # -vocab x hidden x 2 bytes of GPU memory (1 GiB on Llama-3-8B), +1 (B, T, h) host->GPU copy per forward;
        # a no-op when the embedding is tied to a head on the GPU (the logits need that matrix there anyway), and
        # already done when offload_lm_head moved a tied matrix
        offload_embedding(model, device)
    if cfg.train.mlp_tile_tokens > 0:
        # each MLP on slices of the sequence: one slice's gate/up/act intermediates alive instead of the whole
        # row's (86 KB per token on Llama-3-8B), for one more MLP forward per step
        from qlorafit.runtime.tiling import tile_mlps
        tile_mlps(model, cfg.train.mlp_tile_tokens)
    if O.checkpointing(cfg.train.grad_checkpointing).to_host:
        # -layers x tokens x hidden x 2 bytes of GPU memory (2 GiB at 8K tokens on an 8B model), the same in pinned
        # host RAM (bounded: half of what is free now; beyond that inputs stay on the GPU), 2 PCIe copies per layer
        return enable_offloaded_checkpointing(model)
    return None


def compile_layers(model, backend: str = "inductor", tail_outside: bool = True) -> int:
    """torch.compile every decoder layer in place; returns how many. The layers share their code, so Dynamo builds
    one graph (forward and backward, bitsandbytes' 4-bit ops as custom ops) and reuses it for all of them. Memory:
    unchanged (the fused kernels save no tensor that eager would not).

    Where the checkpoint goes: outside the compiled call, so that the recompute can stop early
    (_mlp_output_projection_eager). Recent transformers checkpoint inside each layer's forward (a wrapper with
    __wrapped__); compiled whole, that checkpoint is traced into the graph (plain) or, with offloaded checkpointing's
    saved_tensors_hooks, which Dynamo cannot trace, makes the layer fall back to eager entirely. So there the inner
    forward is compiled and torch's non-reentrant checkpoint (offloading or not) runs eagerly around the compiled
    call. Older transformers (5.17) checkpoint in the layer's __call__, already outside the compiled forward.
    Short micro-batches (tail_outside false) keep plain checkpointing traced in the whole compiled layer.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(base, "model", base), "layers", None)
    if layers is None or len(layers) == 0:
        warnings.warn("train.compile: no decoder layers found (model.layers); not compiled", stacklevel=2)
        return 0
    inner = getattr(type(layers[0]).forward, "__wrapped__", None)  # the forward before transformers' wrapper
    from qlorafit.runtime.offload import active_handle

    checkpointed = getattr(layers[0], "gradient_checkpointing", False)
    if inner is not None and (active_handle(model) is not None or (tail_outside and checkpointed)):
        compiled = torch.compile(inner, backend=backend)  # one function object: one graph for every layer

        def forward(self, *args, **kwargs):
            if self.gradient_checkpointing and self.training:
                if kwargs.get("use_cache"):  # as transformers' wrapper does: no cache under checkpointing
                    kwargs["use_cache"] = False
                if kwargs.get("past_key_values") is not None:
                    kwargs["past_key_values"] = None
                return self._gradient_checkpointing_func(functools.partial(compiled, self, **kwargs), *args)
            return compiled(self, *args, **kwargs)

        for layer in layers:
            if tail_outside:
                _mlp_output_projection_eager(layer)
            layer.forward = types.MethodType(forward, layer)
        return len(layers)
    for layer in layers:
        if tail_outside and checkpointed:  # older transformers: the checkpoint is in __call__, outside
            _mlp_output_projection_eager(layer)
        layer.compile(backend=backend)
    return len(layers)


def fuse_with_liger(model) -> bool:
    """liger-kernel's RMSNorm, RoPE and SwiGLU in place of the model's own (uncompiled layers under CUDA graphs), as
    transformers' Trainer applies them (use_liger_kernel); the loss stays qlorafit's. Speed: at 1 x 2,048 on
    Llama-3-8B the graphed step's GPU time went from 250 to 209 ms, 7,933 -> 9,494 tok/s, and 2 x 4 x 512 from
    7,624 to 9,087 tok/s (benchmarks/README.md, eighth session). Memory: a little less (fewer fp32 temporaries).
    False where liger-kernel is not installed or does not know the model type; SwiGLU only for dense MLPs (a MoE
    block's experts are left as they are)."""
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance  # what transformers' Trainer calls
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_type = getattr(base.config, "model_type", None)
    if model_type not in O.LIGER_MODEL_TYPES:  # the estimate sized these layers without liger's kernels
        return False
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        warnings.warn(f"liger-kernel as installed does not patch {model_type!r}: the layers run unfused, and the "
                      f"estimate, which assumed its RMSNorm and SwiGLU, is low by what they save for backward "
                      f"(pip install -U liger-kernel)", stacklevel=2)
        return False
    layers = getattr(getattr(base, "model", base), "layers", None) or []
    dense = all(all(hasattr(getattr(layer, "mlp", None), n) for n in ("gate_proj", "up_proj", "down_proj"))
                for layer in layers)
    modeling = sys.modules.get(type(base).__module__)  # e.g. transformers.models.llama.modeling_llama
    before = dict(vars(modeling)) if modeling is not None else {}
    _apply_liger_kernel_to_instance(model=base, rope=True, rms_norm=True, swiglu=dense and bool(layers),
                                    cross_entropy=False, fused_linear_cross_entropy=False)
    # liger also swaps the modeling module's classes (LlamaRMSNorm, LlamaMLP) for every model built later in this
    # process; this instance's modules are patched one by one, so the classes go back: a later model with compiled
    # layers failed in Dynamo on liger's RMSNorm (GPU tests run in one process, session 9). Its RoPE is a module
    # function the attention looks up at each call, so it stays: a later model runs liger's RoPE too, eagerly
    # under torch.compile (liger keeps it out of the compiled graph)
    for name, value in before.items():
        if isinstance(value, type) and vars(modeling).get(name) is not value:
            setattr(modeling, name, value)
    # liger 0.8.5 looks for its optional backends (CuTe DSL, Ascend) on the first call of an op and warns for each
    # one not installed, twice per run, though its Triton kernels are what runs: those lines are not the user's
    logging.getLogger("liger_kernel.backends.registry").setLevel(logging.ERROR)
    return True


def _mlp_output_projection_eager(layer) -> None:
    """Run the dense MLP's output projection (down_proj) outside the compiled layer, when it has no LoRA.

    Speed, not memory: the checkpoint's recompute in backward only has to rebuild the tensors backward needs, and
    torch's non-reentrant checkpoint stops recomputing once it has them. A frozen 4-bit projection saves nothing
    (bitsandbytes' backward needs only the packed weight), so eager recompute skips the layer's last dequantize and
    matmul. A compiled layer is one autograd function, recomputed whole: down_proj ran 3 times per step instead of
    2, +5 % of a 16K step's GPU time on Llama-3-8B (benchmarks/README, issue 16). With the projection outside,
    the compiled part ends where the recompute can stop. LoRA on the projection saves its input (the recompute
    must reach it), and a MoE block is not one dense MLP: both are left compiled whole.
    """
    mlp = getattr(layer, "mlp", None)
    children = list(mlp.children()) if mlp is not None else []
    projections = [m for m in children if isinstance(m, torch.nn.Linear) or hasattr(m, "base_layer")]
    dense = len(projections) >= 2 and all(m in projections or next(m.parameters(), None) is None for m in children)
    if dense and not hasattr(projections[-1], "base_layer"):
        projections[-1].forward = torch.compiler.disable(projections[-1].forward)


def compile_supported(device: torch.device) -> bool:
    """train.compile runs where inductor's Triton kernels do: a CUDA device of compute capability 7.0 or newer with
    Triton installed. Elsewhere (CPU, older GPUs, no Triton) the layers run eagerly, with a warning on CUDA."""
    if device.type != "cuda":
        return False
    from torch.utils._triton import has_triton  # noqa: PLC0415 - torch-internal, imported only where it is used

    if torch.cuda.get_device_capability(device) < (7, 0) or not has_triton():
        warnings.warn("train.compile: this GPU or install has no Triton (needs compute capability 7.0+ and the triton "
                      "package); the layers run eagerly", stacklevel=3)
        return False
    return True


def load_model(cfg: Config, path: str, device: torch.device, quant_storage: torch.dtype = torch.uint8) -> Loaded:
    """The whole qlorafit load path: 4-bit base, frozen, checkpointing, LoRA on top, then the host-RAM levers."""
    model, dtype = load_base(cfg, path, device, quant_storage)
    freeze_and_cast(model, cfg)
    apply_checkpointing(model, cfg.train.grad_checkpointing)  # offload starts as this; apply_memory_levers routes it
    peft_model = attach_lora(model, cfg)
    handle = apply_memory_levers(peft_model, cfg, device)
    if cfg.train.compile and cfg.train.mlp_tile_tokens > 0 and device.type == "cuda":
        # the tiled MLP's checkpoints nested inside a compiled layer are not measured on a GPU yet, and at the lengths
        # that call for tiling the step is GPU-bound anyway (compile gains little there)
        warnings.warn("train.compile with train.mlp_tile_tokens: the layers run eagerly", stacklevel=2)
    elif O.graphs_on(cfg.train.cuda_graphs):
        # graphs take the host out of the step themselves, and the norms, RoPE and SwiGLU are fused by liger-kernel's
        # Triton kernels where it is installed. Compiled layers do capture since the graphed pass's attention is
        # causal_attention, but ran slower inside the graphs: 10,264 against 10,696 tok/s at 1 x 2,048 on
        # Llama-3-8B (benchmarks/README.md, ninth session)
        fuse_with_liger(peft_model)
    elif cfg.train.compile and compile_supported(device):  # CPU inductor needs a C++ toolchain and gains little
        tokens = cfg.train.micro_batch_size * cfg.data.max_seq_length  # the longest micro-batch the run makes
        # GPU-bound micro-batches leave the frozen down_proj out of the recompute: +5.4 % at 1 x 16,384, +6.4 % at
        # 4 x 2,048 on Llama-3-8B; below, the graph break's host cost wins (0.78x at 1 x 2,048; benchmarks/README.md)
        compile_layers(peft_model, tail_outside=tokens >= O.GPU_BOUND_TOKENS)
    if device.type == "cuda":
        # hand back what loading left cached: the bf16 staging of quantized weights and, with offload_embedding /
        # offload_lm_head, the old GPU blocks of the embedding and the head. Cached-but-free memory still counts
        # on the card (and against other processes), and would sit as allocator slack under every later peak
        torch.cuda.empty_cache()
    return Loaded(peft_model, dtype, device, handle)


def trainable_counts(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit params count their packed elements x 2."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel() * (2 if p.dtype == torch.uint8 else 1)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
