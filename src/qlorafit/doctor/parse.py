"""Reading an OOM out of pasted text: which message form it is, its numbers, the phase and step it happened in.

Plain Python over regular expressions. Every number kept here was printed by PyTorch, the CUDA libraries, the trainer
or the allocator: nothing is inferred. Sizes are integer bytes.

Forms understood (one predicate, `oom_kind`, names them):
  cuda      'CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 16.00 GiB total capacity; 14.00 GiB already
            allocated; 1.50 GiB free; 14.50 GiB reserved in total [by PyTorch])'            (torch < 2.1)
            'CUDA out of memory. Tried to allocate 150.00 MiB. GPU 0 has a total capacity of 3.80 GiB of which
            130.31 MiB is free. Including non-PyTorch memory, this process has 3.66 GiB memory in use. Of the
            allocated memory 3.52 GiB is allocated by PyTorch, and 53.87 MiB is reserved by PyTorch but
            unallocated.'  ('Process 2116 has 10.95 GiB memory in use' where the PID is not ours)  (torch >= 2.1)
            torch.OutOfMemoryError / torch.cuda.OutOfMemoryError / 'CUDA error: out of memory' without numbers
  cublas    CUBLAS_STATUS_ALLOC_FAILED (cuBLAS could not get its workspace: the card was full)
  cudnn     CUDNN_STATUS_ALLOC_FAILED, or CUDNN_STATUS_NOT_SUPPORTED (cuDNN's answer when no workspace fits)
  bnb       bitsandbytes allocation failures (cudaMalloc / cudaMallocManaged failed, an OOM inside bitsandbytes)
  cpu       'DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes' (or 'not enough memory'), a
            kill by the kernel's OOM killer, Colab's 'session crashed after using all available RAM'
  dispatch  bitsandbytes/transformers' 'Some modules are dispatched on the CPU or the disk': the quantized model does
            not fit the GPU memory that is free
  kv_cache  vLLM's engine start: 'max seq len (32768) is larger than the maximum number of tokens that can be stored in
            KV cache (7344)', 'No available memory for the cache blocks': the KV cache does not fit what is left
  presumed  no out-of-memory form or word at all, but the text reports a failure ('Evaluation loop breaks after...',
            'error'), a stall ('stuck at loading'), or talks about memory ('memory usage goes up'): the doctor is
            asked about an OOM, so one is presumed (form 'presumed', the report's confidence is low); kind cpu when
            the memory the text names is the host's, else 'presumed'
  (words)   an out-of-memory told in words only ('OOM at step 164', '爆显存'): kind cuda (or cpu for RAM), form 'words'
"""

import re
from dataclasses import dataclass, field

from qlorafit.doctor import phase
from qlorafit.doctor.shortage import MEMORY_TALK, shortage

_UNIT = {"b": 1, "bytes": 1, "kib": 1024, "kb": 1000, "mib": 1024**2, "mb": 1000**2, "gib": 1024**3, "gb": 1000**3,
         "tib": 1024**4}
_SIZE = r"(\d+(?:\.\d+)?\s*(?:[KMGT]iB|[KMG]B|bytes|B))"


def size_bytes(text: str) -> int:
    """'150.00 MiB' -> 157286400; '0 bytes' -> 0. PyTorch's sizes are binary (MiB, GiB)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", text)
    if not m or m.group(2).lower() not in _UNIT:
        raise ValueError(f"not a size: {text!r}")
    return int(round(float(m.group(1)) * _UNIT[m.group(2).lower()]))


@dataclass
class OomText:
    """What one pasted error says. None means the text did not say it."""

    kind: str | None = None  # cuda, cublas, cudnn, bnb, cpu; None when the text holds no out-of-memory error
    form: str | None = None
    """old (torch < 2.1, '(GPU 0; ... total capacity; ...)'), current ('GPU 0 has a total capacity of'), bare."""
    gpu_index: int | None = None
    requested_bytes: int | None = None
    total_bytes: int | None = None
    free_bytes: int | None = None
    process_bytes: int | None = None
    """'this process has X memory in use' (PyTorch + CUDA context + other libraries of this process)."""
    other_processes: dict = field(default_factory=dict)
    """'Process N has X memory in use': pid -> bytes. PyTorch prints this when N is not its own PID, which in a
    container can still be this process (the PID namespaces differ)."""
    allocated_bytes: int | None = None  # held by live tensors ('already allocated', 'is allocated by PyTorch')
    reserved_bytes: int | None = None
    """Held by PyTorch's caching allocator in all ('reserved in total', or allocated + reserved-but-unallocated)."""
    unallocated_reserved_bytes: int | None = None
    """Reserved by PyTorch but not in use by any tensor: the free fragments of the cache."""
    cudnn_not_supported: bool = False
    in_bitsandbytes: bool = False
    phase: str | None = None
    """load, tokenization, training (step unknown), first_step, later_step, eval, generation, save, merge; None when
    nothing in the text says (qlorafit.doctor.phase)."""
    phase_evidence: str = ""
    step: int | None = None
    total_steps: int | None = None
    elapsed_s: int | None = None
    fp16_signs: list = field(default_factory=list)
    """Lines saying fp16 overflowed (NaN/inf loss, unscale errors, loss-scale overflow): not a memory problem."""
    log_settings: dict = field(default_factory=dict)
    """Settings the trainer's own log printed: per_device_train_batch_size, gradient_accumulation_steps, gpu_name,
    gpu_total_bytes, trainable_params, world_size."""
    cache_bytes: int | None = None
    """axolotl's 'GPU memory usage while training: A GB (+C GB cache, ...)': C is reserved-but-unallocated."""
    distributed: bool = False


def _size(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text, re.I | re.S)
    return size_bytes(m.group(1)) if m else None


DISPATCH = re.compile(r"Some modules are dispatched on the CPU or the disk|"
                       # bitsandbytes' older refusal of the same placement: 'If max_memory=max_memory, it will throw
                       # 8-bit operations are not supported under CPU'
                       r"[48]-bit operations? (?:on `?bitsandbytes`? )?(?:are|is) not supported under CPU", re.I)
"""bitsandbytes' refusal of 4/8-bit layers that accelerate's device map put on the CPU, in its current and older
words."""
DISK_OFFLOAD = re.compile(r"will be offloaded to disk\W+(?:please )?pass along an .?offload_folder", re.I)
"""accelerate's refusal to place the model when the GPUs and the host RAM together cannot hold it ('At least one of the
model submodule will be offloaded to disk, please pass along an `offload_folder`'): the weights do not fit, at the
load."""
_KV_CACHE = re.compile(r"number of tokens that can be stored in (?:the )?KV cache|No available memory "
                       r"for the cache blocks|Insufficient memory for (?:the )?KV cache|larger than the available KV "
                       r"cache memory|not enough KV cache space|KV cache is needed, which is larger|"
                       r"Not enough memory for (?:the )?KV[ -]?cache", re.I)
_SHELL_KILLED = re.compile(r"(?<![A-Za-z0-9_-])(?:Killed|KILLED)(?![A-Za-z0-9_-])(?! process)")
"""The shell's word for a process the kernel's OOM killer ended, capitalised as it prints it, quoted inside a
sentence ('出现 Killed 输出', 'it just prints Killed', '加载Killed了'): host RAM, whatever the reporter guesses about
the GPU. Its edges are Latin letters only: Chinese written against it ('加载Killed了') is still a separate word. In
capitals too ('the quantization prompt KILLED at the end'): a report shouting the shell's word."""
_NEGATED = re.compile(r"\b(?:not|no|never|without|instead of)\b[^.\n]{0,30}$|n't\b[^.\n]{0,30}$|(?:没有|不会|并未|未)\S{0,10}$",
                      re.I)
"""A word said not to have happened: the few words before it deny it."""
_FAILURE_WORDS = re.compile(r"\b(?:error|exception|breaks?|broke|fail(?:s|ed|ing|ure)?|crash\w*|hangs?|stops?|di(?:es|ed))\b|"
                            r"Traceback|报错|崩溃|中断", re.I)
_CPU_WORDS = re.compile(r"\[\d{1,3}\]\s+\d{2,7}\s+killed\s+\S|"  # zsh's job report: '[1]    16699 killed     python3 gen.py'
                        # WSL's Linux VM stopped under Windows when the memory given to it runs out: 'it freezes and
                        # disconnects from WSL'
                        r"\bdisconnect\w* (?:me )?(?:from )?(?:the )?WSL2?\b|\bWSL2? (?:session |instance |vm |itself )?"
                        r"(?:crash\w*|disconnect\w*|freez\w*|froze|shuts? down|shut down|dies|died|closes|closed|"
                        r"terminat\w*)\b|"
                        r"node (?:is )?running low on memory|ray\.exceptions\.OutOfMemoryError|\bray oom\b|"  # Ray's monitor
                        r"\bRayOutOfMemoryError\b|of the memory on node\b|"  # (older Ray's memory monitor)
                        # Kubernetes: the container killed at its memory limit ('OOMKilled', 'exit 137'), the pod
                        # pushed past its memory cap
                        r"\bOOMKilled\b|\bexit(?:ed)?(?: with)?(?: code)?:? 137\b|"
                        r"\b(?:pod|container)s?\b[^.\n]{0,40}\b(?:past|over|above|exceed\w*) (?:its |the )?(?:new )?"
                        r"(?:\d+\s?Gi?B? )?(?:memory )?(?:cap|limit)\b|"
                        # host RAM use complained of ('excessive ram usage', 'occupy over 80GB of RAM'): not GPU RAM
                        r"\b(?:excessive|huge|high|massive|insane|enormous) (?:host |system |cpu )?(?<!GPU )(?<!V)RAM "
                        r"(?:usage|use|consumption)\b|"
                        r"\b(?:occup\w*|us(?:es|ing|ed)|tak(?:es|ing)|eat(?:s|ing)) (?:over |up to |about |around |~)?\d+\s?GB "
                        r"of (?:system |host |CPU )?RAM\b|"
                        r"\b(?:CPU|host|system) OOM\b|\b(?:gets?|got) kill\b|"  # 'CPU OOM when training Qwen2.5-VL-7B with GRPO'
                        r"more (?:memory |RAM )?than (?:the |my |our |this )?(?:node|machine|server|host|system|box|"
                        r"computer|pc|workstation) (?:has|have|had)\b|all available RAM|tried to allocate more memory than is available|insufficient shared memory|\(shm\)|Out of memory: Kill(?:ed)? process|subprocess(?:es)? ha(?:s|ve) ?abruptly died|"
                        r"system oom|not enough (?:host |system |cpu )?RAM|kill(?:s|ed)? the (?:process|kernel|session|job)|"
                        r"(?:process|kernel|session) (?:was |got |is |gets )?killed|"
                        # the kill told of the loading or the program, or quoted as it printed: 'Loading checkpoint shards
                        # gets killed at 0%', 'it always pops up a "killed" message'
                        r"(?:shards?|checkpoint|loading|script|program|python|it) (?:gets|got|was|is|being) "
                        r"(?:always |often |sometimes |just |suddenly |eventually |then )?killed\b|"
                        r"[\"'“]killed[\"'”]|\bkilled message|(?:host|cpu|system) (?:RAM|memory) (?:is )?"
                        r"(?:full|exhausted|not enough)|shards:\s*\d+%[^\n]*\n?[^\n]*\bkilled\b|"
                        # the memory named is the host's: 'OOM on RAM', 'RAM ran out', '内存' (not 显存, GPU memory)
                        r"\b(?:OOM|out of memory|ran out|runs? out)\s(?:on|of|in)\s(?:the\s)?(?:host\s|cpu\s|system\s)?"
                        r"(?:RAM|host memory|system memory|CPU memory)\b|(?<![\w-])RAM\s(?:OOM|ran out|runs? out|is full|exhausted)|"
                        r"(?:RAM|host memory|CPU memory)(?: usage)? (?:keeps |kept )?(?:grow|ris|increas|climb)\w*[^.\n]{0,60}"
                        r"(?:crash|killed|OOM|die[sd]?\b|exhaust\w*|(?:all|every) [^.\n]{0,12}consumed)|爆内存|(?<!GPU)(?<!GPU )(?<!卡)内存(?:不足|溢出|爆|不够|超|泄漏|泄露|占满|满了)|"
                        # the kernel's kill in other words: exit code 137 (128 + SIGKILL), -9, a notebook kernel dying,
                        # the host's memory at 100 %
                        r"exit (?:code|status)\W{0,3}(?:137|-9)\b|(?:return(?:ed)?|exit) (?:code|status)\W{0,3}-9\b|"
                        r"(?:错误码|返回码|退出码|状态码)\s?[:：=]?\s?(?:-9|137)(?!\d)|"
                        r"(?:进程|程序|任务)被(?:系统)?(?:杀|kill)|(?:kernel|notebook) (?:has |appears to have )?(?:di(?:es|ed)|crash(?:es|ed)|restart\w*)|"
                        r"(?<![A-Za-z])(?:RAM|host memory|CPU memory|system memory)(?: usage)? "
                        r"(?:goes|went|reach\w*|hits?|climbs?|"
                        r"spikes?|explodes?|blows? up)(?: up)?(?: to 100)?|"
                        r"(?:(?<![\w-])RAM|system memory|host memory|CPU memory) (?:fills? up|filled up|maxe[sd] out|is all used)|"
                        r"(?:uses?|using|used|eats?|eating|ate|takes?|took|consumes?|consuming) (?:up )?all (?:of )?(?:the |my |"
                        r"our )?(?:a\w{3,7}ble )?(?:system |host |cpu )?RAM\b|"  # ('avilable' as typed too)
                        # the host's RAM named as what the work lacks: 'crash ... instances that don't have at
                        # least 13-14 GiB of system RAM', 'an OOM issue on CPU'
                        r"\bcrash\w*\b[^.\n]{0,80}?\b(?:system|host|CPU) RAM\b|"
                        r"\b(?:OOM|out[- ]of[- ]memory)(?: (?:issue|error|problem|crash))? on (?:the )?(?:CPU|host)\b|"
                        r"(?<!GPU)(?<!GPU )(?<!卡)内存[^，。,.\n]{0,6}(?:升高|增长|上涨|增加|暴涨)[^。.\n]{0,16}(?:崩溃|挂|killed|"
                        r"爆|溢出|OOM)|"
                        # a process that ends with no error at all: the kernel's OOM killer leaves no traceback
                        r"\b(?:just|simply|silently|suddenly|then) (?:exits|exited|quits|quit|terminates|terminated)\b|"
                        r"\b(?:just|simply|silently|suddenly) (?:stops|stopped|dies|died)\b(?! (?:at|on|after|in) (?:step|epoch|"
                        r"iteration|batch))|"
                        r"\bexit(?:s|ed)? (?:silently|without (?:any |an )?(?:error|message|traceback|output))|"
                        r"(?:直接|自动|突然)退出|没有(?:任何)?报错(?:就|直接)?(?:退出|结束)|"
                        # the host's RAM named as what the model does not fit: 'the Mistral model does not fit inside
                        # the RAM'; the kill's -9 told as a code ('getting this -9 kill code'); llama.cpp's (ggml's)
                        # failed host allocation ('failed to allocate CPU buffer')
                        r"(?:does ?n[o']t|doesn't|won'?t|cannot|can'?t|can not|unable to) fit (?:in|inside|into|within) "
                        r"(?:the |my |our )?(?:host |system |cpu |machine's )?RAM\b|"
                        r"(?<![\w-])-9 kill\b|\bkill(?:ed)? (?:code|signal)\W{0,3}-?9\b|"
                        r"failed to allocate (?:a |the )?CPU buffer|cpu_buffer_type_alloc_buffer", re.I)
_FIT_TALK = re.compile(r"\b(?:fits?|fitting|get\w* (?:it |\w+ )?(?:to )?(?:work\w*|run\w*|fit)) (?:on|in(?:to)?|within|"
                       r"with) (?:a |one |the |my |our )?(?:single |one )?(?:\d{1,3}\s?G(?:B|iB)? )?(?:card|gpu|"
                       r"(?:RTX\s?|GTX\s?)?(?:[AHLTV]\d{1,3}|[1-5]0[5-9]0(?:\s?Ti)?|A[2-6]000)\b)", re.I)
"""Whether a run fits a card ('fits on a single 4090', 'get it working on one A100'): the report is about memory, and
a report brought to the doctor about fitting a card is about one that did not fit."""
BATCH_CAPPED = re.compile(r"batch(?:[_ ]?size)?\s?(?:can |could )?only (?:be )?(?:set )?(?:to |up to |at |as high as )?(?:a )?"
                          r"(?:1|one|2|two)\b|(?:can|could) only (?:use|run|train with|fit|set) (?:a )?batch(?:[_ ]?size)? "
                          r"(?:of |to |at )?(?:1|one|2|two)\b|batch(?:[_ ]?size)?\s?(?:只能|最多|最大只能)(?:设置?|开|调|跑)?(?:到|为|成)?\s?[12一二]"
                          r"(?![0-9])|只能(?:跑|用|开|设置?)?\s?batch(?:[_ ]?size)?\s?(?:=|为|到)?\s?[12一二](?![0-9])", re.I)
"""The report says the batch cannot go above one or two ('batch只能设置到1', 'I can only use a batch size of 1'): the
memory limits it, told without an error."""
_NOT_GPU = re.compile(r"(?:不是|并非|而非|并不是|非)显存|not (?:the )?(?:gpu|cuda|video|device) (?:memory|ram)\b|not (?:the )?vram\b|"
                      r"rather than (?:the )?(?:gpu memory|vram)", re.I)
"""The report says the memory that ran out is not the GPU's ('内存不够，不是显存不够', 'the CPU RAM runs out, not the VRAM')."""
_GPU_WORDS = re.compile(r"(?<![A-Za-z])OOM(?:ed|s|ing)?(?![A-Za-z])|out[- ]of[- ]memory|"
                        r"(?:ran|run|runs|running) out of (?:gpu |cuda |video )?(?:memory|vram)|out of (?:gpu|cuda|video) memory|"
                        r"(?:ran|run|runs|running) out of (?:the )?GPUs?\b(?! (?:hours|time|quota|credits))|"
                        # filler between 显存 and the verb: '显存都要爆了', '显存快不够'
                        r"显存[^，。,.；;!！?？\s]{0,4}?(?:溢出|不足|不够|超|爆)|爆显存|超(?:出)?显存|Unable to allocate|"
                        # C++'s failed allocation, as native runtimes print it (onnxruntime, llama.cpp's forks)
                        r"std::bad_alloc|\bbad[ _]alloc(?:ation)?\b|"
                        r"memory (?:overflow|spike)|CUDA error: out of|exceeds? (?:the )?(?:gpu |cuda )?memory|"
                        r"(?:not enough|insufficient) (?:free )?(?:gpu |cuda |video )?(?:memory|vram)|(?:(?:cuda|gpu|video) )?memory errors?\b|"
                        r"cudaErrorMemoryAllocation|Insufficient Memory|memory leak|"
                        r"\b(?:gpus?|cards?|显卡) (?:is |are |was |were |gets? |got )?(?:completely |all )?(?:full|maxed out)\b|"
                        r"(?:does ?n[o']t|doesn't|won'?t|cannot|can'?t|can not|unable to) fit\b(?! (?:the |a )?(?:lora|adapter|"
                        r"tokenizer|schema|format|pattern))|"
                        r"(?:gpu |cuda |video )?(?:memory|vram) (?:is |was |gets |got )?(?:not enough|insufficient|full\b|"
                        r"exhausted|fill(?:s|ed)? up|maxed out)|"
                        r"显存(?:占满|满了|泄漏|泄露|占用(?:过高|太高|很高|过大|太大|很大|特别大|非常大|巨大|越来越(?:大|多|高)))|显存被\S{0,8}占(?:用|满)|"
                        # a memory-usage complaint is a question about memory: 'huge memory usage (160GB VRAM)'
                        r"(?:huge|high|excessive|massive|enormous|insane|crazy|abnormal\w*|too much) (?:gpu |vram |cuda |video )?"
                        r"memory (?:usage|use|consumption)|"
                        # the model does not fit one card: 'cannot run a 72B on a single GPU', '单卡放不下'
                        r"(?:does ?n[o']t|won'?t|cannot|can'?t|can not|unable to) (?:fit|run|load)\b[^.\n]{0,40}\b(?:on|in|into) "
                        r"(?:a single|one|a|single|my|our|the|this) [\w -]{0,12}?(?:gpu|card|[AHLVT]\d{1,3}|\d{4})\b|无法在单(?:张)?卡|单(?:张|块)?卡(?:无法|放不下|装不下|跑不了|跑不动)|"
                        # 'cannot hold' said of what the memory must hold: '80G A100放不下80的batch_size'
                        r"(?:放|装|塞)不下", re.I)


_HOST_NAMED = re.compile(r"(?:\bhost|\bCPU|\bsystem|\bnode)[ -]?(?:RAM|memory|mem)\b|\bRSS\b|\bfree -[hgm]\b|"
                         r"\bswap(?:ping)? (?:space|file|memory|usage|partition|is (?:full|used))|(?:increas\w*|add\w*|more|"
                         r"no|the|of) swap\b|\bswap\s*:|"
                         r"\b(?:loads?|loaded|loading|reads?|read|copies|copied) (?:the |a |its |whole |full |entire )*"
                         r"(?:model|checkpoint|weights|dataset|data) (?:in)?to (?:the )?(?:host |system |cpu )?RAM\b|"
                         r"\bdmesg\b|\bOOM[- ]?kill\w*|\boom_kill\w*|\bpage ?file\b|\bpaging file\b|虚拟内存|"
                         r"(?:worker|rank|container|pod|job|trial)s? (?:was |got |is |are |gets |were )?(?:OOM[- ])?killed|"
                         r"(?<!GPU)(?<!GPU )(?<!显卡)(?<!显卡 )(?<![卡显])内存|"
                         # (a number that is a size, not inside a name: 't2t translation' is no 2 TB)
                         r"(?<![A-Za-z])\d+(?:\.\d+)?\s?(?:TB|TiB|T)\b[^.\n]{0,12}\b(?:memory|RAM)\b|"
                         r"\b(?:memory|RAM)\b[^.\n]{0,30}?(?<![A-Za-z\d.])\d+(?:\.\d+)?\s?(?:TB|TiB|T)\b", re.I)
"""Words that name the host's memory, not a GPU's: host/CPU/system/node RAM or memory, a process's RSS, `free -h`,
swap, dmesg, the kernel's OOM killer, a worker or container killed, 内存 (RAM; 显存 is GPU memory), a memory size in
terabytes (no GPU has that much). A CPU named as where weights are offloaded to is not the memory that ran out."""
_OFFLOAD_TO_CPU = re.compile(r"offload\w*[^.\n]{0,30}?(?:\bto|\binto|到)\s?(?:the )?(?:cpu[ -]?(?:RAM|memory|mem)?|(?:host|system) (?:RAM|memory)|"
                             r"RAM\b|内存|主存)",
                             re.I)  # '把优化器和param offload到内存了': where the states went, not what ran out
VLLM_KV_SIZING = re.compile(r"determine_num_available_blocks|_initialize_kv_caches|\bprofile_run\b")
"""vLLM's frames that size the KV cache when the engine starts: the weights are on the GPU by then, and the profile
run measures what is left of the card."""
GPU_MEMORY_NAMED = re.compile(r"显存|\bVRAM\b|(?:GPU|CUDA|video|device|(?:video|graphics) card)[ -]?(?:memory|RAM|mem\b|内存)|显卡内存|"
                               r"\bcuda:\d|nvidia-smi|out of memory on (?:the |my )?(?:GPU|card)|\bGPU OOM\b|"
                               # a GPU given with its memory: 'a 4090 GPU (24 GB)', 'a 24GB GPU'
                               r"\bGPUs? \(\d+\s?GB\)|\b\d+\s?GB (?:GPU|graphics card)s?\b|"
                               # vLLM sizing its KV cache on the GPU at start (the profile run, the block count)
                               + VLLM_KV_SIZING.pattern, re.I)
"""Words that name a GPU's memory as the one in question: said ('显存', 'VRAM', 'GPU OOM'), or a frame that measures
it (vLLM's KV-cache sizing at start)."""
_GPU_ANY = re.compile(r"\bGPUs?\b|\bCUDA\b|显卡|显存|\bVRAM\b|\bnvidia\b|\b(?:RTX|GTX)\b|"
                      r"(?<![\w-])[AHLVTP]\d{1,3}(?![\w-])|\b\d{4} ?Ti\b|单卡|多卡|\d\s?张?卡", re.I)
_RAM_SIZED = re.compile(r"\b\d+(?:\.\d+)?\s?(?:[GT]i?B?|gigs?)\s?(?:of\s)?(?:DDR\d\s)?RAM\b", re.I)
"""'64G ram', '32 GB of RAM': RAM with its size, which people write for the host ('VRAM' for a GPU's)."""


_UNIFIED = re.compile(r"(?<![\w-])M[1-5](?: (?:Pro|Max|Ultra))?(?![\w-])|Apple (?:silicon|M\d)|\bMac(?:Book(?: Pro| Air)?|"
                      r" ?Studio| ?mini| ?Pro)?\b|\bmacOS\b|\bmlx(?:[-_]\w+)?\b|(?<![\w-])Metal(?![\w-])|\[METAL\]|kIOGPU\w+|\bMPS\b|"
                      r"unified memory", re.I)
"""Apple silicon, MLX, Metal (not Tenstorrent's tt-metal) or PyTorch's MPS backend: the GPU has no memory of its own
(unified memory), so the 'RAM' such a report names (a 16GB M2) is the GPU's memory, and running out of it is the
accelerator's OOM."""


_CONVERSION = re.compile(r"\bconvert[\w-]*\.py\b|\bconvert(?:s|ed|ing|er)?\b[^.\n]{0,40}?\b(?:to|into)\s(?:gguf|npz|mlx|"
                         r"safetensors|f16|f32|fp16|bf16)\b|\bconversion\b|" + phase.DELTA_APPLIED, re.I)
"""A checkpoint conversion (convert-hf-to-gguf.py, 'conversion to npz'), or a weight delta added to a base checkpoint
(FastChat's apply_delta for Vicuna): a CPU job on whole state dicts, whatever the machine's GPU."""


PINNED_ON_WSL = re.compile(r"(?=[\s\S]*\bWSL2?\b)[\s\S]*?(?:[\"']?pin_memory[\"']?\s*[:=]\s*[\"']?true|pinned memory)",
                           re.I)
"""Pinned (page-locked) host memory asked for (DeepSpeed's offload with pin_memory: true) under WSL2, whose CUDA has
only a small pinned-memory budget: the out-of-memory is that host budget's, not the GPU's."""
SHARED_MEMORY_BOARD = re.compile(r"\bjetson\b|\b(?:AGX )?orin\b|\bxavier\b|\btegra\b|\bDGX Spark\b|\bGB10\b", re.I)
"""NVIDIA boards whose GPU has no memory of its own (Jetson Nano/Orin/Xavier, DGX Spark's GB10): the host RAM the
kernel runs out of is the GPU's memory too, so an out-of-memory told without CUDA's own message is the machine's
RAM."""


_CPU_ONLY = re.compile(r"\bCPU[- ]only\b|\b(?:only )?on (?:the )?CPU only\b|\bonly (?:on )?(?:the )?CPU\b|"
                       r"device(?:_map)?\s*=\s*[\"']cpu[\"']|仅(?:用|使用)?\s?CPU|只用\s?CPU", re.I)
"""The report runs on the CPU only: its RAM is the host's, whatever machine (a Mac's unified memory included)."""


def unified_memory(text: str) -> bool:
    """The report runs on Apple's unified memory (an M-series Mac, MLX, Metal, MPS): its RAM is the GPU's."""
    return bool(_UNIFIED.search(text))


def host_memory_named(text: str) -> bool:
    """The memory the report is about is the host's: it names host memory (host/CPU RAM, RSS, `free -h`, swap, the
    OOM killer, 内存, terabytes) and names no GPU memory; or it names RAM with a size and no GPU at all ('OOM with 64G
    ram'). An out-of-memory told in words with no CUDA message is then host RAM, whatever the setting (vLLM, a
    launcher) would suggest for the GPU."""
    t = _OFFLOAD_TO_CPU.sub(" ", text)
    if GPU_MEMORY_NAMED.search(t) or unified_memory(t):  # on unified memory the RAM named is the GPU's
        return False
    return bool(_HOST_NAMED.search(t)) or (bool(_RAM_SIZED.search(t)) and not _GPU_ANY.search(t))


_CARD_MEMORY = re.compile(r"((?:每[张块个台]\s?(?:卡|GPU|显卡)|(?:卡|GPU|显卡)\s?(?:上|的)|显卡)[^，。,.；;!！?？\n]{0,10}?)内存",
                          re.I)
"""内存 said of a card ('每张卡只占用了13G内存', 'GPU 的内存', '卡上内存'): the card's memory, which people also call 内存.
Not a setup that merely names cards ('多卡训练时内存一直上涨' is the host's RAM growing)."""


def card_memory_as_vram(text: str) -> str:
    """The text with 内存 written of a card in the same clause read as 显存 (GPU memory): 内存 alone is the host's."""
    return _CARD_MEMORY.sub(lambda m: m.group(1) + "显存", text)


def oom_kind(text: str) -> str | None:
    """The one predicate for the OOM message forms: which kind of out-of-memory error `text` holds, or None.
    Message forms first; then bitsandbytes' dispatch refusal (the model does not fit the free GPU memory); then an
    out-of-memory told in words ('OOM at step 164', '爆显存', 'session crashed after using all available RAM')."""
    killed = [m for m in re.finditer(r"DefaultCPUAllocator|can't allocate memory: you tried to allocate|not enough "
                                     r"memory: you tried to allocate|\bMemoryError\b|Killed\s*$|exitcode\s*:\s*-9|"
                                     r"signal 9|SIGKILL(?!_)|signal: killed", text, re.I | re.M)] + list(_SHELL_KILLED.finditer(text))
    # ('signal: killed' is Go's word for it: Ollama's runner)
    # a kill the report says did not happen ('and not receive the SIGKILL(9) error') is none
    if any(not _NEGATED.search(text[max(0, m.start() - 40):m.start()]) for m in killed):
        if not re.search(r"CUDA out of memory|OutOfMemoryError", text):
            return "cpu"
    if re.search(r"CUBLAS_STATUS_ALLOC_FAILED", text):
        return "cublas"
    if re.search(r"CUDNN_STATUS_ALLOC_FAILED|CUDNN_STATUS_NOT_SUPPORTED", text):
        return "cudnn"
    if re.search(r"cudaMalloc(?:Managed|Host)? failed|bitsandbytes[^\n]*(?:out of memory|alloc)", text, re.I):
        return "bnb"
    # ('CUDA failed with error out of memory': CTranslate2's, under faster-whisper and WhisperX; TensorFlow's
    # ResourceExhaustedError; Vulkan's VK_ERROR_OUT_OF_DEVICE_MEMORY: MLC LLM, llama.cpp's Vulkan build, whose
    # ggml_vulkan prints it as 'vk::Device::allocateMemory: ErrorOutOfDeviceMemory' after 'Device memory allocation of
    # size N failed')
    if DISPATCH.search(text) and not re.search(r"Tried to allocate|total capacity", text):
        return "dispatch"  # the library's refusal quoted beside an OOM told only in words: the refusal is what printed
    if re.search(r"CUDA out of memory|(?<!ray\.exceptions\.)(?<!Ray)OutOfMemoryError|CUDA error: out of memory|CUDA_ERROR_OUT_OF_MEMORY|"
                 r"CUDA failed with error out of memory|ResourceExhaustedError|VK_ERROR_OUT_OF_DEVICE_MEMORY|"
                 r"ErrorOutOfDeviceMemory|Device memory allocation of size \d+ failed|"
                 # XLA's (JAX and PyTorch/XLA on TPUs): 'RESOURCE_EXHAUSTED: Failed to allocate request for 12.50MiB'
                 r"RESOURCE_EXHAUSTED: Failed to allocate|XlaRuntimeError: RESOURCE_EXHAUSTED|"
                 r"Tried to allocate \d+(?:\.\d+)? ?[KMG]i?B", text):  # the message cut to its middle still is one
        return "bnb" if re.search(r"bitsandbytes[/\\]", text) and not re.search(r"total capacity", text) else "cuda"
    if DISK_OFFLOAD.search(text):
        return "cuda"  # the model fits neither the GPUs nor, with them, the host RAM: read as the weights on the GPU
    if DISPATCH.search(text):
        return "dispatch"
    if _KV_CACHE.search(text):
        return "kv_cache"
    if _NOT_GPU.search(text) and (_CPU_WORDS.search(text) or shortage(text) or host_memory_named(text)):
        return "cpu"  # '内存不够，不是显存不够': the report itself says which memory, and that it is not the card's
    cpu = _CPU_WORDS.search(text)
    # '爆内存' where the same report also says 爆显存: the loose 内存 is the GPU's memory the report names exactly
    if cpu and "内存" in cpu.group(0) and not re.search(r"(?:CPU|系统|主机)\s?内存", cpu.group(0), re.I) \
            and re.search(r"显存", text) and not re.search(r"\d+\s?[GT]i?B?\s?的?内存", text, re.I):  # '720G的内存': RAM
        cpu = None
    if cpu:
        # 'a 16GB M2 runs out of RAM' is the GPU's memory; a conversion killed on a Mac is not (it runs on the CPU)
        # (nor a run said to be on the CPU only: 'CPU only processing', on a PC and on a Mac alike)
        return "cuda" if unified_memory(text) and not _CONVERSION.search(text) and not _CPU_ONLY.search(text) \
            else "cpu"
    if _GPU_WORDS.search(text) and PINNED_ON_WSL.search(text):
        return "cpu"  # WSL2 gives CUDA little pinned host memory: an offload that pins its buffers runs out of it
    gpu_words = _GPU_WORDS.search(text)
    if gpu_words and all(re.fullmatch(r"std::bad_alloc|bad[ _]alloc(?:ation)?", w.group(0), re.I)
                         for w in _GPU_WORDS.finditer(text)) and not _GPU_ANY.search(text) and \
            not re.search(r"onnx|ggml|llama[.-]?cpp|directml|ctranslate|tensorrt|openvino", text, re.I):
        # (not a native runtime's: onnxruntime or ggml print bad_alloc for their device's memory too)
        # C++'s operator new failing with no GPU named anywhere: the host's memory ('parser.parse("hi") terminate
        # called after throwing an instance of 'std::bad_alloc' ... Aborted (core dumped)')
        return "cpu"
    if gpu_words:
        # (on a board that shares its RAM with the GPU, an out-of-memory that names no GPU memory is the machine's)
        return "cpu" if host_memory_named(text) or (SHARED_MEMORY_BOARD.search(text) and
                                                    not GPU_MEMORY_NAMED.search(text)) else "cuda"
    told = shortage(text)  # a shortage in words the phrases above do not list: its memory noun says whose
    if told:
        kind = told[0] or ("cpu" if host_memory_named(text) else "cuda")
        return "cuda" if kind == "cpu" and unified_memory(text) else kind
    return None


def parse_cuda_numbers(text: str, out: OomText) -> None:
    """Fill the numbers of a CUDA OOM message, in whichever form it is written."""
    # PyTorch's 'Tried to allocate 2.00 GiB'; TensorFlow's and JAX's 'trying to allocate 392.00MiB' say the same
    out.requested_bytes = _size(r"(?:Tr[a-z]{0,2}ied|trying) to allocate " + _SIZE, text)  # 'Traied': typed by hand
    if out.requested_bytes is None:
        # ggml's (llama.cpp and its forks): 'allocating 15712.47 MiB on device 0: cudaMalloc failed'
        out.requested_bytes = _size(r"allocating " + _SIZE + r" on device \d+: cudaMalloc failed", text)
    if out.requested_bytes is None:  # XLA's: 'Failed to allocate request for 12.50MiB'
        out.requested_bytes = _size(r"Failed to allocate request for " + _SIZE, text)
    if out.requested_bytes is None:  # Tenstorrent's: 'Not enough space to allocate 2147483648 B DRAM buffer'
        m = re.search(r"Not enough space to allocate (\d+) B\b", text)
        out.requested_bytes = int(m.group(1)) if m else None
    if out.requested_bytes is None:  # ggml's Vulkan backend, in bytes ('Device memory allocation of size N failed')
        m = re.search(r"Device memory allocation of size (\d+) failed", text)
        out.requested_bytes = int(m.group(1)) if m else None
    # Ascend's torch_npu writes PyTorch's message with 'NPU' for 'GPU' ('NPU out of memory ... (NPU 0; 60.96 GiB total')
    m = re.search(r"\((?:GPU|NPU) (\d+); " + _SIZE + r" total capacity", text)
    if m:  # old form: everything in one parenthesis
        out.form = "old"
        out.gpu_index, out.total_bytes = int(m.group(1)), size_bytes(m.group(2))
        out.allocated_bytes = _size(_SIZE + r" already allocated", text)
        out.free_bytes = _size(_SIZE + r" free", text)
        out.reserved_bytes = _size(_SIZE + r" reserved in total", text)
        if out.reserved_bytes is not None and out.allocated_bytes is not None:
            out.unallocated_reserved_bytes = max(0, out.reserved_bytes - out.allocated_bytes)
        return
    m = re.search(r"(?:GPU|NPU) (\d+) has a total capac\w* of " + _SIZE + r" of which " + _SIZE + r" is free", text)
    if m:
        out.form = "current"
        out.gpu_index, out.total_bytes, out.free_bytes = int(m.group(1)), size_bytes(m.group(2)), size_bytes(m.group(3))
        out.process_bytes = _size(r"this process has " + _SIZE + r" memory in use", text)
        for pid, sz in re.findall(r"Process (\d+) has " + _SIZE + r" memory in use", text):
            out.other_processes[int(pid)] = size_bytes(sz)
        out.allocated_bytes = _size(r"Of the allocated memory " + _SIZE + r" is allocated by PyTorch", text)
        out.unallocated_reserved_bytes = _size(_SIZE + r" is reserved by PyTorch but unallocated", text)
        if out.allocated_bytes is not None and out.unallocated_reserved_bytes is not None:
            out.reserved_bytes = out.allocated_bytes + out.unallocated_reserved_bytes
        return
    # PaddlePaddle's ResourceExhaustedError: 'Cannot allocate 12.44GB memory on GPU 3, 27.58GB memory has been allocated
    # and available memory is only 4.16GB.' (no total: the card's size is the sum)
    m = re.search(r"Cannot allocate " + _SIZE + r" memory on GPU (\d+), " + _SIZE + r" memory has been allocated and "
                  r"available memory is only " + _SIZE, text)
    if m:
        out.form = "paddle"
        out.requested_bytes, out.gpu_index = size_bytes(m.group(1)), int(m.group(2))
        out.allocated_bytes, out.free_bytes = size_bytes(m.group(3)), size_bytes(m.group(4))
        return
    out.form = "bare"


# --- phase and step (the evidence rules live in qlorafit.doctor.phase) ----------------------------------------------

def parse_progress(text: str, out: OomText) -> None:
    """The last step the training loop reached: its progress bar ('1488/5798 [7:44:21<...'), 'step N', 'global_step N'.
    Bars of other work (datasets.map, tokenization, loading shards, evaluation) are not training steps."""
    bars = [b for b in phase.progress_bars(text) if b.phase == "training"]
    if bars:
        b = bars[-1]
        out.step, out.total_steps, out.elapsed_s = b.n, b.total, b.elapsed_s
        return
    steps = re.findall(r"(?:global_step|\bstep)[\s=:]+(\d+)", text, re.I)
    if steps:
        out.step = int(steps[-1])
        out.step = 0 if out.step == 1 else out.step  # 'step 1' written out is the first step, counted from one


def parse_phase(text: str, out: OomText) -> None:
    """Frames first, then the last log marker, then the user's words; training is split into first and later steps
    only on step evidence (a bar, a logged loss, the report's words)."""
    ph, why = phase.phase_from_frames(phase.frame_names(text))
    if ph in (None, "training"):  # frames that name load, eval, save... are the strongest evidence there is
        mph, mwhy, _ = phase.last_marker(text)
        if mph == "load" and phase.MODEL_RAN.search(text):
            mph = None  # the model's own forward is in the traceback: it was loaded and ran, whatever bar came last
        if mph and (ph is None or mph in ("eval", "generation", "save", "merge")):
            ph, why = mph, mwhy
    step_ph, step, step_why = phase.step_from_words(text)
    if ph is None:
        ph, why = phase.phase_from_words(text)
        if step_ph and not why.endswith("the out-of-memory") and not (ph == "generation" and not re.search(
                r"\btrain|微调|训练", text, re.I)):  # nothing trains: the growth is over replies, not steps
            # a phase word only near a failure or memory talk ('it fails on startup itself', of another attempt) is
            # weaker than the report's own count of the steps that ran ('runs for ~15k iterations')
            ph, why = None, ""
    if ph is None and step_ph:
        ph = "training"
    if ph == "training":
        if out.step is not None:
            ph = "later_step" if out.step > 0 else "first_step"
            why = f"{why}; progress bar at step {out.step}" if why else f"progress bar at step {out.step}"
        elif phase.OPTIMIZER_STATE_CREATED.search(text):
            ph, why = "first_step", f"{why}; the optimizer creates its state, which it does at its first step"
        elif re.search(r"\{'loss': ", text):
            ph, why = "later_step", f"{why}; a logged loss before the error" if why else "a logged loss before the error"
        elif step_ph:
            ph, why = step_ph, f"{why}; {step_why}" if why else step_why
            out.step = step if step is not None else out.step
    out.phase, out.phase_evidence = ph, why


# --- fp16, trainer logs -------------------------------------------------------------------------------------------

_FP16_SIGNS = (
    r"Attempting to unscale FP16 gradients", r"'loss': nan", r"'grad_norm': nan", r"loss (?:is|=) ?nan",
    r"loss (?:is|=) ?inf", r"Gradient overflow\.? +Skipping step", r"[Oo]verflow detected", r"reducing loss scale",
    r"eval_loss'?: nan", r"found_inf", r"NaN or Inf found in input tensor",
)


def parse_fp16(text: str, out: OomText) -> None:
    for pat in _FP16_SIGNS:
        m = re.search(pat, text, re.I)
        if m:
            out.fp16_signs.append(m.group(0))


def parse_trainer_logs(text: str, out: OomText) -> None:
    """Settings printed by transformers' Trainer, Unsloth's banner, axolotl's memory log, torchrun's rank prefixes."""
    s = out.log_settings
    for pat, key in ((r"Instantaneous batch size per device = (\d+)", "per_device_train_batch_size"),
                     (r"Batch size per device = (\d+)", "per_device_train_batch_size"),
                     (r"Gradient [Aa]ccumulation steps = (\d+)", "gradient_accumulation_steps"),
                     (r"(?:Number of trainable parameters|Trainable parameters) = ([\d,]+)", "trainable_params"),
                     (r"Num GPUs(?: used)? = (\d+)", "world_size")):
        m = re.search(pat, text)
        if m:
            s[key] = int(m.group(1).replace(",", ""))
    m = re.search(r"GPU: (?:NVIDIA )?([^.\n]+?)\. (?:Num GPUs = \d+\. )?Max memory: ([\d.]+) GB", text)
    if m:
        s["gpu_name"] = m.group(1).strip()
        s["gpu_total_bytes"] = int(float(m.group(2)) * 1024**3)  # Unsloth prints GiB and calls them GB
    m = list(re.finditer(r"GPU memory usage while training: ([\d.]+)GB \(\+([\d.]+)GB cache", text))
    if m:
        out.allocated_bytes = out.allocated_bytes or int(float(m[-1].group(1)) * 1024**3)
        out.cache_bytes = int(float(m[-1].group(2)) * 1024**3)  # axolotl prints GiB as 'GB'
    out.distributed = bool(re.search(r"\[rank[1-9]\d*\]|torchrun|accelerate launch|torch\.distributed|"
                                     r"Data Parallel GPUs = [2-9]|world_size", text))


def parse(text: str) -> OomText:
    """Everything the pasted text says about the failure."""
    text = card_memory_as_vram(text)
    out = OomText(kind=oom_kind(text))
    if out.kind in ("cuda", "bnb"):
        parse_cuda_numbers(re.sub(r"\s+", " ", text), out)
        if out.form == "bare" and not re.search(r"CUDA out of memory|OutOfMemoryError|CUDA error|CUDA_ERROR", text):
            out.form = "words"  # told in words: no message, no numbers  # messages get wrapped mid-sentence when pasted
    elif out.kind == "cpu":
        m = re.search(r"you tried to allocate (\d+) bytes", text)
        out.requested_bytes = int(m.group(1)) if m else None
        out.form = "cpu"
    elif out.kind:
        out.form = "library"
    parse_fp16(text, out)
    if out.kind is None and not out.fp16_signs and (_FAILURE_WORDS.search(text) or phase.STALL.search(text)
                                                     or re.search(phase.WONT_LOAD, text, re.I)
                                                     or MEMORY_TALK.search(text) or _FIT_TALK.search(text)
                                                     or BATCH_CAPPED.search(text)):
        out.kind, out.form = "presumed", "presumed"  # asked about an OOM, told of a failure: presumed, never proven
        if host_memory_named(text) or (_CONVERSION.search(text) and not GPU_MEMORY_NAMED.search(text)):
            # the memory the report talks about is the host's ('CPU memory usage climbs past 1T'); a checkpoint
            # conversion's memory is the host's too ('the conversion consumes approximately 282GB of memory')
            out.kind = "cpu"
    out.cudnn_not_supported = "CUDNN_STATUS_NOT_SUPPORTED" in text
    out.in_bitsandbytes = bool(re.search(r"bitsandbytes[/\\]", text))
    parse_progress(text, out)
    parse_phase(text, out)
    if out.kind == "kv_cache" and out.phase is None:
        out.phase, out.phase_evidence = "load", "vLLM's KV-cache check when the engine starts"
    if out.phase is None and DISK_OFFLOAD.search(text):
        out.phase, out.phase_evidence = "load", "accelerate places the model's layers as it loads"
    parse_trainer_logs(text, out)
    return out
