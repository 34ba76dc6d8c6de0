"""Small facts the rules ask about a Case, each read from what the user gave (error text, script, config, settings):
the launch (processes, ZeRO stage, FSDP), vLLM, quantization, the precision flags. Plain functions, no state."""

import re

from qlorafit.core import options as O
from qlorafit.doctor import prose
from qlorafit.doctor.case import Case
from qlorafit.doctor.foreign import launch_facts
from qlorafit.doctor.ruled_out import batch_one_fails
from qlorafit.doctor.settings import Depends


def text(c: Case) -> str:
    """The pasted error text and the posted script's text, where the rules look for names and frames."""
    script = c.inputs.script.text if c.inputs.script is not None else ""
    return (c.inputs.error_text or "") + ("\n" + script if script else "")


def settings_text(c: Case) -> str:
    """The settings read from the input as 'key=value' words, for the readers that look for a trainer's words in them
    (finetuning_type=lora, neat_packing=True)."""
    return " ".join(f"{k}={v}" for k, v in c.settings.items())


def setting(c: Case, key: str, default=None):
    v = c.settings.get(key, default)
    return default if v is None else v


def world_size(c: Case) -> int | None:
    """Processes the launch starts (torchrun/accelerate/deepspeed flags, an accelerate config, [rankN] prefixes)."""
    ws = setting(c, "world_size") or c.oom.log_settings.get("world_size") or \
        launch_facts(c.inputs.error_text or "").get("world_size")  # the pasted launch command itself
    if ws == "several":
        return 2
    if isinstance(ws, int):
        return ws
    ranks = [int(r) for r in re.findall(r"\[rank(\d+)\]", c.inputs.error_text or "")]
    if ranks and max(ranks) > 0:
        return max(ranks) + 1
    n = gpu_count(c)
    if n and n > 1 and (_LAUNCHER.search(c.inputs.error_text or "") or zero_stage(c) is not None):
        return n  # 'torchrun on multiple gpus', 'Number of gpus: 8'; DeepSpeed's launcher starts one per visible GPU
    return None


_LAUNCHER = re.compile(r"\btorchrun\b|torch\.distributed\.(?:run|launch)|accelerate launch|\bDDP\b|"
                       r"DistributedDataParallel", re.I)


_PLAIN_PYTHON = re.compile(r"(?<![\w-])python3?\s+(?:-u\s+)?\S+\.py\b", re.I)


_DATA_PARALLEL_SAID = re.compile(r"(?<!不)(?:是|都是|用的是|使用了?|采用了?)\S{0,3}数据并行|(?:uses?|using|runs?|running|is|are) "
                                 r"(?:plain |only |just )?(?:data[- ]parallel(?:ism)?|DDP)\b", re.I)
"""The report says the run is data parallel ('脚本貌似都是数据并行', 'it uses plain DDP'), not that it wishes it were not."""


def data_parallel(c: Case) -> bool:
    """One plain `python train.py` process that sees several GPUs (CUDA_VISIBLE_DEVICES=0,1,2, '4 GPUs'): the
    transformers Trainer then wraps the model in torch.nn.DataParallel, a whole replica on every GPU (and the outputs
    gathered on the first), unless the model is split with a device_map."""
    t = text(c)
    n = gpu_count(c)
    if n and n > 1 and _DATA_PARALLEL_SAID.search(t) and TRAINING_WORDS.search(t):
        return True  # the report itself says the training is data parallel: a replica on every GPU
    # the Trainer's wrap: a report that trains (an inference script on several GPUs uses whichever device it is told)
    return bool(n and n > 1 and _PLAIN_PYTHON.search(t)) and bool(TRAINING_WORDS.search(t)) and \
        not _LAUNCHER.search(t) and not re.search(
        r"\bdeepspeed\b|FORCE_TORCHRUN|NPROC_PER_NODE|device_map|llamafactory-cli|\bswift\b", t, re.I) \
        and setting(c, "world_size") is None and not ONE_VISIBLE.search(t) and not _FIRST_GPU_ONLY.search(t)


_FIRST_GPU_ONLY = re.compile(r"(?:都|只)(?:是|有)?在第一[块张个]\s?(?:gpu|卡|显卡)|(?:all|only) (?:runs? |trains? |training )?"
                             r"(?:on|uses?|using) (?:the )?first (?:gpu|card)\b|only (?:one|1|a single) (?:gpu|card) "
                             r"(?:is |was )?(?:used|busy|working|utili[sz]ed)", re.I)
"""The report says only the first GPU works ('都是在第一块gpu训练', 'it all trains on the first GPU'): no replica on the
others."""


ONE_VISIBLE = re.compile(r"CUDA_VISIBLE_DEVICES\s*=\s*[\"']?\d+(?![\d,])")
"""The process is shown one GPU ('CUDA_VISIBLE_DEVICES=1 python train.py'), whatever the machine has: no
DataParallel replica on the others."""


def launched(c: Case) -> bool:
    """A multi-process launcher is named: torchrun, accelerate launch, torch.distributed, DDP."""
    return bool(_LAUNCHER.search(c.inputs.error_text or ""))


def gpu_count(c: Case) -> int | None:
    """GPUs the report says the machine has ('8xH100', '8*80G', '4卡', '七张h100', 'two 4090s', 'Number of gpus: 8',
    1 for '单卡'): not processes. prose.gpus is the one reader of it."""
    return prose.gpus(c.inputs.error_text or "").count


def card_bytes(c: Case) -> int | None:
    """One GPU's memory: --gpu or the OOM message's total capacity, else the card or size the report names."""
    return c.budget_bytes or prose.gpus(c.inputs.error_text or "").memory_bytes


_SIXTEEN_WORDS = re.compile(r"\b(?:16[- ]?bit|bf16|fp16|b?float16|half precision)\b", re.I)
TRAINING_WORDS = re.compile(r"\btrain|fine-?tun|\blora\b|\bsft\b|\bdpo\b|\bgrpo\b|batch[ _]size|微调|训练", re.I)


_FORWARD_FRAME = re.compile(r"\b(?:activations|functional|modeling_\w+|linear|normalization|sparse|conv|activation|"
                            r"\w*attention\w*)\.py\W{1,3},? line \d+, in (?:forward|_forward|\w*gelu\w*|\w*silu\w*|"
                            r"\w*swish\w*|softmax|linear|layer_norm|rms_norm|\w*attn\w*|\w*attention\w*|embedding|"
                            r"_conv_forward)\b", re.I)
"""A frame of a model's forward computation (an activation, a linear layer, attention, a norm): where a batch's
activations are allocated."""
_ON_CPU = re.compile(r"\bonnx\s?runtime\b|\bonnxruntime\b(?![_-]genai)|\bONNX (?:embedder|embedding model|model)\b|"
                     r"\b(?:runs?|running|ran|inference|infer\w*|embedd\w*|encod\w*|train\w*) on (?:the )?CPU\b|"
                     r"\bCPU[- ]only\b|device\s*=\s*[\"']cpu[\"']", re.I)
"""The report's model runs on the CPU: ONNX Runtime (CPU unless given the CUDA provider), an inference or a training
said to run on the CPU, a CPU-only machine, device='cpu'."""


def forward_on_cpu(c: Case) -> str | None:
    """A host out-of-memory raised by the model's own forward on the CPU: the evidence, or None. A model that runs on
    the CPU keeps its activations in host RAM, so what ran out is the batch's (or the input's) activations, as on a
    card; host RAM is only where they lived. Shown by a forward frame of the failed allocation with no load, save,
    merge or tokenization frame; or said: a model run on the CPU (ONNX Runtime, 'inference on CPU') whose batch the
    report names."""
    if c.oom.kind != "cpu" or c.oom.phase in ("load", "save", "merge", "tokenization"):
        return None
    t = c.inputs.error_text or ""
    frame = _FORWARD_FRAME.search(t)
    host = re.search(r"DefaultCPUAllocator|can't allocate memory|not enough memory: you tried to allocate", t)
    if frame and host:  # (a load, save, merge or tokenization frame placed it in its phase above)
        return f"the host allocation failed in the model's forward ('{frame.group(0)}'): the model runs on the CPU"
    cpu = _ON_CPU.search(text(c))
    if cpu and re.search(r"batch", t, re.I):
        return (f"the report says '{cpu.group(0)}': the model runs on the CPU, so its batch's activations are in "
                f"host RAM")
    return None


_PLAIN_TUNE = re.compile(r"(?<![A-Za-z])lora(?![A-Za-z])|full[- ]?(?:fine-?tun\w*|parameter)|全参|全量", re.I)
"""A LoRA (not QLoRA: 'qlora' does not match) or a full fine-tune named in words."""


def weights_quantized(c: Case) -> bool:
    """The frozen weights are 4/8-bit: loading asks for it, or the words say so. Otherwise 16-bit: a LoRA or full
    fine-tune that names no quantization, a trainer config that loads without it, and a fine-tune that names no
    method at all ('OOM when training LLaMA-2-70B'), since 16-bit loading is every trainer's default and only this
    tool assumes QLoRA. (Until session 10 a fine-tune naming no method was taken as QLoRA; on the studied threads
    16-bit was right on the one thread where the two differ, and on none was 4-bit.)"""
    q = quantized(c)
    if q is not None:
        return q
    if quantizes(c):
        # a run that quantizes the model (AWQ/GPTQ calibration, llm-compressor's oneshot, a weight-only conversion)
        # holds it at 16 bits while it measures and packs it: the 4-bit size is its output, not what it loads
        return False
    return prose.quantization_stated(text(c)) is not None


_LORA_NAMED = re.compile(r"(?<!between )(?<!than )(?<!instead of )(?<!compared to )(?<!compared with )"
                         r"(?<!vs\. )(?<!vs )(?<![A-Za-z_])q?lora(?![A-Za-z_])(?! (?:and|or|vs\.?|versus) full\b)",
                         re.I)
"""LoRA or QLoRA named as a method, not inside a flag's name ('--lora_rank 8' is in every LLaMA-Factory command),
nor as the other side of a comparison ('performance between LoRA and fully fine-tuning', 'LoRA vs full')."""


def lora_16bit(c: Case) -> bool:
    """A LoRA fine-tune of 16-bit weights: LoRA named (in words, or the config's finetuning_type/use_lora/use_peft)
    and no quantization asked for."""
    s = c.settings
    if str(s.get("finetuning_type", "")).lower() == "full":
        return False  # a lora_rank flag left in a full fine-tune's command names no LoRA
    named = _LORA_NAMED.search(text(c)) or s.get("use_peft") is True \
        or str(s.get("finetuning_type", "")).lower() == "lora" or s.get("use_lora") not in (None, False)
    return bool(named) and not weights_quantized(c)


_FULL_TUNE = re.compile(r"(?:continu\w*|continual|incremental) pre-?train\w*|继续预训练|增量预训练|二次预训练|"
                        # pretraining a model (not the pretrained one, nor pretraining's data): every weight trains
                        r"(?<![A-Za-z])pre-?training\b(?! (?:data|dataset|corpus|checkpoints?|weights|objective|stage|"
                        r"phase|tokens))|\bfrom scratch\b|"
                        r"full(?:y)?[- ]?(?:fine-?tun\w*|fune?tun\w*|finetun\w*|parameter|param|training|tuning)|全参|全量(?:微调|训练)?|"
                        # 'full微调', 'full模式' (ms-swift's sft_type full, said in Chinese), '--sft_type full'
                        r"(?<![A-Za-z])full\s?(?:微调|训练|模式)|(?:sft|train)_type\W{1,3}full\b|"
                        # a config named for a full fine-tune: XTuner's 'llama3_70b_full_alpaca_e3', LLaMA-Factory's
                        # 'examples/train_full/llama3_full_sft.yaml' (not FSDP's full_shard or a full state dict)
                        r"(?<=[_/])full_(?:sft|alpaca|ft|finetun\w*|pt|dpo|orpo|kto|train\w*|custom\w*)\b|"
                        r"(?<=[_/])full_\w*?_e\d+\b|\btrain_full\b", re.I)


_TRAINABLE_SHARE = re.compile(r"trainable%\s*:\s*(\d+(?:\.\d+)?)")
"""PEFT's print_trainable_parameters line ('trainable params: 4,194,304 || all params: ... || trainable%: 0.0622')."""
TRAINS_MOST_SHARE = 50.0
"""A printed trainable share at or above this (percent) is every weight training: an adapter's is under a few %."""


def trains_most_printed(c: Case) -> str | None:
    """The run printed that most of its parameters train ('trainable%: 100.0000'): whatever adapter it names, every
    base weight gets gradients and optimizer state. The printed line's share, or None."""
    shares = [float(m.group(1)) for m in _TRAINABLE_SHARE.finditer(c.inputs.error_text or "")]
    return f"trainable%: {shares[-1]:g}" if shares and shares[-1] >= TRAINS_MOST_SHARE else None


def full_tune(c: Case) -> bool:
    """A full fine-tune (every weight trained, so gradients and optimizer state for all of them): said in words, or
    the config's finetuning_type: full, or printed by PEFT (trainable% near 100), and no LoRA named."""
    if str(c.settings.get("finetuning_type", "")).lower() == "full" or trains_most_printed(c):
        return True  # the config says so; a lora_rank flag left in the same command trains nothing
    # LoRA named as a method, not inside a flag's name ('--lora_rank 8' is there in every LLaMA-Factory command)
    return bool(_FULL_TUNE.search(text(c))) and not _LORA_NAMED.search(text(c))


_ADAPTER_DEFAULT = re.compile(r"llama[-_ ]?factory|train_bash\.py|src/train\.py|llamafactory-cli|\bswift\b|ms-swift|"
                              r"unsloth|xtuner|firefly|chatglm\w*[-_ ]?(?:tuning|finetun)", re.I)
"""Trainers whose default run is a LoRA (LLaMA-Factory's finetuning_type, ms-swift's train_type, Unsloth, XTuner's
and Firefly's configs, the ChatGLM tuning repos): a run of theirs that names no method is not a full fine-tune."""


def adapter_named(c: Case) -> bool:
    """An adapter method (LoRA, QLoRA, PEFT, DoRA, prefix/prompt tuning, freezing) or a trainer's method setting is named
    in the report or the posted script. Not a script's adapter config that it never applies (script.py reads that
    run as training every weight), nor one whose every weight is set to train afterwards: only the report's own
    words then. Never where the run printed that most of its weights train."""
    if trains_most_printed(c):
        return False  # an adapter that does not keep the base frozen is no adapter for memory
    if c.settings.get("adapter_unused") or c.settings.get("unfreezes_all"):
        # (an adapter applied and then every weight set to train: a full fine-tune in LoRA's clothes)
        return bool(prose.ADAPTER_WORDS.search(c.inputs.error_text or ""))
    return bool(prose.ADAPTER_WORDS.search(text(c)))


def full_by_default(c: Case) -> bool:
    """A training run that names no method at all (no LoRA or other adapter, no quantization, no trainer whose
    default is LoRA) and still fails at a micro-batch of 1: transformers' Trainer, TRL's trainers without a
    peft_config, DeepSpeed-Chat, verl and OpenRLHF train every weight unless told otherwise, and what does not shrink
    with the batch is the weights and their states. Without the batch of 1 it is not read: on the studied threads a
    run that names no method was as often a LoRA whose batch was too large (a full fine-tune assumed there was wrong
    on 6 of 9)."""
    t = text(c)
    return not full_tune(c) and bool(batch_one_fails(t)) and bool(TRAINING_WORDS.search(t)) and not prose.ADAPTER_WORDS.search(t) \
        and not _ADAPTER_DEFAULT.search(t) and not weights_quantized(c) \
        and not any(k in c.settings for k in ("finetuning_type", "use_lora", "use_peft", "lora_r", "lora_rank"))


def length_uncapped(c: Case) -> bool:
    """The script or config sets no length cap: max_length=None, or the tokenizer's own model_max_length (a sentinel of
    1e30 for a tokenizer that names no limit, or the model's whole context), or the model config's own maximum
    (max_position_embeddings, script._CAP_IS_MODEL_MAX): nothing is truncated, so a batch is as
    long as its longest sample, and any size the estimate gives the length is a guess."""
    if "max_length" not in c.settings:
        return False
    v = c.settings["max_length"]
    return v is None or (isinstance(v, str) and (v.startswith("None") or "model_max_length" in v or
                                                 "the model's whole context" in v))


def model_params(c: Case) -> tuple[float, str] | None:
    """Billions of parameters of the model the settings or the report name, and where it was read."""
    b = prose.model_params_b(str(c.settings.get("model") or ""))
    if b is not None:
        return b, "the settings"
    b = prose.model_params_b(c.inputs.error_text or "")
    return (b, "the report") if b is not None else None


def named_weights(c: Case) -> tuple[int, str] | None:
    """The weights of the model as the input sizes it: the estimate's, else the parameter count of the model the
    settings or the report name ('Qwen-14B-Chat', 'Llama 3 70B'): half a byte each when weights_quantized, 2 bytes
    otherwise. With the words it rests on."""
    if c.est is not None:
        return c.est.phases["load"], f"estimate for {c.est.model}"
    named = model_params(c)
    if named is None:
        return None
    b, where = named
    q = weights_quantized(c)
    per = 0.5 if q else 2
    return int(b * 1e9 * per), (f"a {b:g}B model named in {where}, {'4-bit' if q else '16-bit'}: {per:g} bytes per "
                                f"parameter")


def zero_stage(c: Case) -> int | None:
    z = setting(c, "zero_stage")
    return z if isinstance(z, int) else None


def sharded(c: Case) -> bool:
    """The weights are sharded across the GPUs: ZeRO-3 or FSDP (not ZeRO-1/2, which copy the weights to every GPU)."""
    return zero_stage(c) == 3 or bool(setting(c, "fsdp")) or str(setting(c, "distributed_type", "")).upper() == "FSDP" \
        or bool(re.search(r"\bFSDP2?\b|FullyShardedDataParallel|\bfully_shard\b|"  # FSDP2 too
                          r"torch[/\\]distributed[/\\]fsdp[/\\]", c.inputs.error_text or ""))  # its frames


def replicates(c: Case) -> bool:
    """The launch is known to replicate the weights: ZeRO stage 0-2, or a whole config (accelerate/trainer) that sets
    neither ZeRO-3 nor FSDP. Not knowing is not evidence (torchtune's distributed recipes shard with FSDP)."""
    if sharded(c) or re.search(r"fsdp|FullyShardedDataParallel|_distributed\.py", text(c), re.I):
        return False
    if data_parallel(c):
        return True
    z = zero_stage(c)
    if z in (0, 1, 2):
        return True
    whole = bool(c.inputs.settings) and not c.inputs.partial_settings
    return whole and (str(setting(c, "distributed_type", "")).upper() in ("MULTI_GPU", "DEEPSPEED", "NO", "")
                      and world_size(c) is not None)


_VLLM = re.compile(r"(?<![A-Za-z0-9_])vllm(?![A-Za-z_])|use_vllm\s*=\s*True|\bself\.llm = LLM\(|gpu[_-]memory[_-]utilization|max[_-]model[_-]len|"
                   # the engine's knob in words, as its fix: 'Reduce GPU memory utilization to make sure OOM doesn't happen'
                   r"\b(?:reduc|lower|decreas)\w* (?:the )?(?:default )?gpu memory utili[sz]ation\b|"
                   r"infer_backend\W+vllm|\bLLMRayActor\b|"
                   # its own source files, classes and engine flags, in a traceback or a log without the package name
                   r"cumem_allocator|CuMemAllocator|\bLLMEngine\b|\bEngineCore\w*|gpu_model_runner|"
                   r"determine_num_available_blocks|_initialize_kv_caches|enforce[_-]eager|max[_-]num[_-]seqs|"
                   r"max[_-]num[_-]batched[_-]tokens|enable[_-]sleep[_-]mode|Capturing CUDA graph shapes|\bprofile_run\b|"
                   r"kv[_-]cache[_-]memory[_-]bytes|Engine core initialization failed", re.I)
"""Names only vLLM uses: the package (any case, 'vllm.entrypoints', 'vLLM related', 'VLLM0.7.2' glued to its version), its engine knobs
(gpu_memory_utilization, max_model_len, in any launcher's spelling: --gpu-memory-utilization, a dotted
actor_rollout_ref.rollout.gpu_memory_utilization), LLaMA-Factory's infer_backend: vllm; and what only vLLM's code
prints: its source files and classes (cumem_allocator.cpp of sleep mode, LLMEngine, EngineCore, gpu_model_runner), its
engine flags (enforce_eager, max_num_seqs, max_num_batched_tokens, kv_cache_memory_bytes), its CUDA-graph capture log,
its start-up profile_run (the dummy batch it measures peak memory with) and its V1 engine's start-up failure ('Engine
core initialization failed'). Not 'KV cache' alone:
HF generate() has one too."""


_RESERVING_ENGINE = re.compile(r"\bsglang\b|mem[_-]fraction[_-]static|\blmdeploy\b|cache[_-]max[_-]entry[_-]count|"
                               r"tensorrt[_-]?llm|\btrtllm\b|kv[_-]cache[_-]free[_-]gpu[_-]mem[_-]fraction|"
                               r"\blightllm\b|max[_-]total[_-]token[_-]num|text[_-]generation[_-]inference|\bTGI\b|"
                               r"text-generation-launcher|max[_-]total[_-]tokens|max[_-]batch[_-]prefill[_-]tokens|"
                               r"(?:key|value|kv)_buffer\s*=\s*\[?\s*torch\.(?:empty|zeros)\(|"
                               r"\bollama\b|\bnum_ctx\b|llama\.cpp|llama[-_]cpp|\bn_ctx\b|--ctx-size|\bexllama\w*|"
                               r"--gpu_split|\bkoboldcpp\b|n_gpu_layers|--n-gpu-layers|--gpulayers|\bgpu[ _-]layers\b|"
                               r"\bmindie\w*|maxPrefillTokens|maxInputTokenLen|text[_-]embeddings[_-](?:inference|router)|"
                               r"max[_-]batch[_-]tokens|"
                               # ExLlamaV2's own quantized format (only ExLlama runs an exl2 model; its cache is sized
                               # for the model's whole context at load); Tenstorrent's trace region, device memory its
                               # inference server reserves for captured traces
                               r"(?<![A-Za-z])exl2\b|trace[_ ]region[_ ]size|"
                               # llama.cpp's own log lines as it creates the context (forks print them too: the KV
                               # buffers and compute buffers it reserves on each device at start); onnxruntime-genai,
                               # whose generator allocates the KV cache for its max_length (the model's whole context
                               # unless set) up front
                               r"\bllama_new_context_with_model\b|\bllama_kv_cache_init\b|\bllama_init_from_\w+|"
                               r"\bllama_model_loader\b|\bggml_init_cublas\b|"
                               # ggml's GPU backends by their log prefix (llama.cpp's Vulkan, CUDA, Metal, SYCL builds)
                               r"\bggml_(?:vulkan|cuda|metal|sycl)\b|"
                               # ExLlama's bits per weight ('the 2.3bpw version fits'): its EXL2 quantization
                               r"\b\d(?:\.\d+)?\s?bpw\b|"
                               r"onnxruntime[_-]genai|OnnxRuntimeGenAI|"
                               # Xorbits Inference (its model launches run vLLM, SGLang or llama.cpp underneath; the
                               # name as people type it too)
                               r"(?<![A-Za-z0-9_])xinfer(?:ence|nece|ance)(?![A-Za-z0-9_])", re.I)
"""Inference engines that reserve a share of the card at start for weights and KV cache the way vLLM does, by their
names and their knobs: SGLang (--mem-fraction-static), LMDeploy (cache_max_entry_count), TensorRT-LLM
(kv_cache_free_gpu_mem_fraction), LightLLM (max_total_token_num: the tokens its KV buffers are allocated for), Hugging
Face TGI (text-generation-launcher, --max-total-tokens, --max-batch-prefill-tokens), Ollama and llama.cpp (num_ctx,
n_ctx, --ctx-size: the whole context's KV cache is allocated when the model loads), ExLlama (its cache for --length,
next to the weights its --gpu_split places); llama.cpp's layer offload (n_gpu_layers, koboldcpp's 'GPU layers'):
the layers put on the card by hand, with their share of the context; Ascend's MindIE (its warm-up sizes the
cache from maxPrefillTokens and maxInputTokenLen); Hugging Face's Text Embeddings Inference (its warm-up runs
max_batch_tokens); and, unnamed, the line that
allocates such an engine's per-layer KV buffers up front ('self.value_buffer = [torch.empty(...) for _ in
range(layer_num)]', LightLLM's memory manager)."""


_LAYER_OFFLOAD = re.compile(r"\bollama\b|llama\.cpp|llama[-_]cpp|\bkoboldcpp\b|\bggml_(?:vulkan|cuda|metal|sycl)\b|"
                            r"n_gpu_layers|--n-gpu-layers|--gpulayers|"
                            r"\bgpu[ _-]layers\b|-ngl\b", re.I)
"""Engines that put only some of a model's layers on the card and keep the rest in host RAM (llama.cpp, Ollama,
koboldcpp), or their layer count: weights larger than the card still run there, so what fails is the share placed
on it (the layers and the context's KV cache), not the model's size."""


def offloads_layers(c: Case) -> bool:
    """The engine splits the layers between the card and host RAM (_LAYER_OFFLOAD)."""
    return bool(_LAYER_OFFLOAD.search(text(c)))


def reserving_engine(c: Case) -> str | None:
    """The words naming an engine other than vLLM that reserves its share of the card up front, or None. An engine
    named as the alternative ('I might need to wait for llama.cpp support', 'instead of Ollama') is not the one that ran."""
    m = _engine_named(text(c), _RESERVING_ENGINE)
    return m.group(0) if m else None


_ALTERNATIVE_BEFORE = re.compile(r"(?:wait(?:ing)? for|instead of|switch(?:ing)? to|rather than|than|unlike|compared (?:to|with)"
                                 # a feature the engine has that this job lacks: 'was previously only implemented for
                                 # vLLM LLMs' (the embedding model that ran is not vLLM's)
                                 r"|\bonly (?:been )?(?:implemented|supported|available|handled) (?:for|with|in|by)"
                                 r"|改用|换成"
                                 # the engine said not to run ('the HuggingFace script (no vllm, no flash-attention)',
                                 # 'without vLLM', '没有vllm')
                                 r"|\bwithout|(?<![A-Za-z])no|\bnot (?:using|use|with|run(?:ning)?)|没有|没用|不用|未使用|不使用"
                                 r")\s*(?:the\s+)?$", re.I)
"""An engine named as the alternative to what ran: waited for, switched to, compared with, the one a feature exists
for, or said not to run."""


def _engine_named(t: str, pattern: re.Pattern) -> re.Match | None:
    """The first name of an engine in `t` that is not named as the alternative ('instead of Ollama', 'wait for
    llama.cpp support', 'only implemented for vLLM'), or None."""
    for m in pattern.finditer(t):
        if not _ALTERNATIVE_BEFORE.search(t[max(0, m.start() - 40):m.start()]) and \
                not re.match(r"\s+support\b", t[m.end():m.end() + 12], re.I):
            return m
    return None


def uses_vllm(c: Case) -> bool:
    """vLLM runs in the job, or another engine that reserves its share of the card the same way."""
    t = c.inputs.error_text or ""
    return bool(reserving_engine(c) is not None or setting(c, "use_vllm") is True or setting(c, "vllm_gpu_memory_utilization") is not None
                or setting(c, "fast_inference") is True or str(setting(c, "infer_backend", "")).lower() == "vllm"
                or c.oom.kind == "kv_cache" or _engine_named(t, _VLLM) or _engine_named(settings_text(c), _VLLM)
                or (c.inputs.script is not None and c.inputs.script.first("LLM") is not None))


def quantized(c: Case) -> bool | None:
    """True: 4-/8-bit loading is asked for; False: a script or config that loads without it; None: not known."""
    if c.from_user and c.setup is not None and O.quant(c.setup.quant).bits < 16:  # not the QLoRA the doctor assumes
        return True
    script = c.inputs.script
    if c.from_user and script is not None and script.model_call is not None:
        # the script's own from_pretrained call says how it loads: a BitsAndBytesConfig written but never passed to it
        # quantizes nothing (script.py reads the config only where quantization_config is passed)
        return bool(c.settings.get("load_in_4bit") or c.settings.get("load_in_8bit"))
    if re.search(r"load_in_4bit\s*[=:]\s*True|load[_-]in[_-](?:4|8)bit(?!\s*[=:]\s*False)|bnb[-_]4bit|BitsAndBytesConfig|"
                 r"quantization_bit|\bnf4\b", text(c), re.I):
        return True
    if c.from_user and (c.inputs.script is not None and c.inputs.script.model_call is not None):
        return False
    # a whole trainer config (LLaMA-Factory's YAML, axolotl's) is where its trainer takes the quantization: one that
    # names a method and no quantization key loads 16-bit weights, whatever the words say of them ('2bit' in the title,
    # a train_qlora folder: the config posted is what ran)
    if c.from_user and c.inputs.settings and not c.inputs.partial_settings and \
            any(k in c.settings for k in _METHOD_KEYS) and not any(k in c.settings for k in _QUANT_KEYS):
        return False
    return None


_METHOD_KEYS = ("finetuning_type", "stage", "adapter", "train_type", "sft_type")
"""A trainer config's keys that name its method: LLaMA-Factory's finetuning_type and stage, axolotl's adapter,
ms-swift's train_type / sft_type."""
_QUANT_KEYS = ("quantization_bit", "load_in_4bit", "load_in_8bit", "quantization_method", "quantize", "quant_bits",
               "bnb_4bit_quant_type", "quantization_config")
"""The keys through which those configs ask for quantized weights."""


def loading_known(c: Case) -> bool:
    """The input says how the model is loaded (a from_pretrained call, or a trainer config naming the model or its
    quantization): only then does a missing 4-bit flag mean the model is not quantized. An accelerate or DeepSpeed
    config alone says nothing about it."""
    if c.inputs.config is not None or (c.inputs.script is not None and c.inputs.script.model_call is not None):
        return True
    return any(k in c.settings for k in ("model", "quant", "load_in_4bit", "load_in_8bit", "quantization_bit",
                                         "torch_dtype", "finetuning_type"))


def _sets_precision(script) -> bool:
    """The posted script holds the calls where precision is chosen (a from_pretrained call, TrainingArguments or a
    TRL config): only then does a missing bf16/fp16 flag mean fp32. An excerpt (a compute_metrics function, a data
    collator) says nothing about precision."""
    return script is not None and (script.model_call is not None or _trainer_args(script))


REFERENCE_PASS = re.compile(r"\bin (?:_precompute_ref_logps|_precompute_ref_log_probs|compute_ref_log_probs|"
                            r"compute_ref_logps)\b")
"""TRL's pass of the reference model over the whole dataset before training (precompute_ref_log_probs=True), in the
traceback: no gradients, in batches of precompute_ref_batch_size (the eval batch when unset)."""
MANY_INPUTS = re.compile(r"(?:encod\w*|embed\w*|vectori[sz]\w*|predict\w*|infer\w*)\b[^.\n]{0,40}?\b\d+(?:\.\d+)?"
                         r"(?:\s?-\s?\d+(?:\.\d+)?)?\s?(?:million|mio|billion)\s(?:of\s)?(?:records|sentences|texts|"
                         r"documents|docs|passages|rows|samples|queries|items|embeddings)\b", re.I)
"""Millions of inputs run through the model at once ('encode around 100 million records'): what one call returns for
all of them stays on the GPU until it ends, whatever the batch it runs them in."""
PREFILL_BATCH = re.compile(r"\bbatched prefill\b", re.I)
"""An engine's prefill of several requests at once, named as what failed ('Batched prefill DRAM OOM'; not SGLang's
'Prefill batch. #new-seq' log line, which every run prints)."""
QUANTIZER = re.compile(r"\b(?:AutoAWQForCausalLM|AutoGPTQForCausalLM|GPTQModel|llmcompressor|GPTQQuantizer)\b|"
                       r"\bmodel\.quantize\(|\boneshot\(|"
                       # in words: 'quantize facebook/opt-6.7b', 'Quantization of larger models on smaller GPUs',
                       # 'oneshot calibration'; TensorRT-LLM's weight-only conversion of a checkpoint
                       r"(?<![A-Za-z])(?:quantiz(?:e|ing)|calibrat(?:e|ing))\s+(?:`|\*\*)?(?:[\w-]+/[\w.-]+|"
                       r"(?:the |a |my |this |larger |large |big |bigger )*(?:models?|llm|checkpoint|weights)\b)|"
                       r"\bquantization of (?:the |a |my |larger |large |big |bigger )*(?:models?|llm|[\w-]+/[\w.-]+)|"
                       r"\boneshot\b[^\n]{0,40}calibration|\bcalibration\b[^\n]{0,40}\boneshot\b|"
                       r"convert_checkpoint\.py[^\n]*(?:\n[^\n]*){0,6}?--use_weight_only", re.I)
"""A post-training quantization job (AutoAWQ, AutoGPTQ, GPTQModel, llm-compressor's oneshot, TensorRT-LLM's
weight-only conversion), in code or in words: it loads the 16-bit model (16-bit by the quantizer's own default), runs
calibration samples through it layer by layer, and trains nothing."""


def quantizes(c: Case) -> bool:
    """The job quantizes a model with calibration data (QUANTIZER in the report or the script)."""
    return bool(QUANTIZER.search(text(c)))


def _trainer_args(script) -> bool:
    """The posted script builds a trainer's arguments (TrainingArguments, a TRL config): it trains."""
    from qlorafit.doctor.script import ARGS_CALLS

    return script is not None and any(script.first(n) is not None for n in ARGS_CALLS)


def precision(c: Case) -> str | None:
    """'16-bit' when bf16/fp16 is on (or set from an expression), 'fp32' when the flags are off, absent or commented
    out and nothing else sets a 16-bit dtype, None when the input does not say."""
    s = c.settings
    flags = [s.get("bf16"), s.get("fp16")]
    if any(f is True or isinstance(f, Depends) for f in flags):
        return "16-bit"
    mixed = str(s.get("mixed_precision") or s.get("precision") or "").lower()
    if mixed.startswith(("bf16", "fp16")):
        return "16-bit"
    dtype = str(s.get("torch_dtype") or s.get("dtype") or "").lower()
    if c.inputs.script is None and not c.from_user:
        return None
    if QUANTIZER.search(text(c)):
        return None  # a quantizer's loader takes the model in 16-bit unless told otherwise
    if s.get("quant") and not _trainer_args(c.inputs.script) and not any(k in s for k in ("bf16", "fp16")):
        # a 4/8-bit load that trains nothing: bitsandbytes keeps what it does not quantize in 16-bit by default
        # (transformers overrides a missing torch_dtype with float16 for it), so no flag left unset makes it fp32
        return None
    if any(k in s for k in ("bf16", "fp16", "commented_bf16", "commented_fp16")) or _sets_precision(c.inputs.script):
        if ("16" in dtype and "float32" not in dtype) or dtype == "auto":
            # 16-bit weights without autocast: not the fp32 case; dtype='auto' loads the checkpoint's own dtype, which
            # for current models is bf16 (and transformers 5's default)
            return None
        return "fp32"
    return None
