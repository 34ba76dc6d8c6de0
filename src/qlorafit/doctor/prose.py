"""What a report says in words about the model and the machine: 'Llama 3 70B on an A100', '8 x A100 80GB',
'单卡40G', '8张80G的卡', 'two 24g 4090s', 'Number of gpus: 8', 'its 192G per GPU'. Read only where no script, config or
OOM message says it, and used as numbers-strength evidence (a rule quotes the words it read). The one reader of these
facts: evidence.gpu_count, card_bytes and model_params ask it.

    model_params_b("Running Llama 3 70B on A100 GPU")   # 70.0
    gpus("V100-32G * 8")                                # Gpus(count=8, memory_bytes=34359738368, name='V100-32G')
"""

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache

from qlorafit.core import catalog
from qlorafit.core.sizes import GIB

ADAPTER_WORDS = re.compile(r"(?<![A-Za-z<])(?:q?lora|peft|adapters?|dora|ia3|p-?tuning|prefix[- ]tuning|prompt[- ]tuning|"
                           r"freeze|frozen)(?![A-Za-z])|finetuning_type|train_type|use_peft|冻结", re.I)
"""An adapter method named (LoRA, QLoRA, PEFT, DoRA, IA3, prefix/prompt tuning, freezing) or a trainer's method
setting: the one pattern for 'not every weight is trained', read by the rules (evidence.adapter_named) and the script
reader (script._trains_every_weight). '<frozen runpy>' in a traceback is Python's frozen module, not a frozen layer."""

# --- the model's size -----------------------------------------------------------------------------------------------

_PARAMS = re.compile(r"(?<![A-Za-z0-9_.])(?:[A-Za-z][A-Za-z0-9_.]*?[-_ ]?)?(?:(\d+)\s?[x×*]\s?)?(\d+(?:\.\d+)?)\s?[bB](?![A-Za-z0-9])"
                     r"(?!\s*(?:tokens|samples|words|bytes))")
"""A parameter count in a model's name or the report's words: 'llama3-70b', 'Qwen1.5-7B-Chat', 'a 13B', '4B的模型',
'Qwen2.5vl32B', 'mixtral8*7B' / '8x7B' (a mixture of experts). Not '12 bytes', '4bit', '1.5B tokens'."""
_YI = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s?亿\s?个?参数")
"""'60亿参数': a count in units of 10^8 (6B); only with 参数, since '1亿条数据' counts samples."""
_NOW = re.compile(r"\b(?:now|currently|this time)\b|现在|目前|当前|这次|如今", re.I)
_WORKS = re.compile(r"\b(?:works?|worked|is fine|runs? fine|ran fine|trains? fine)\b|没问题|正常|能跑|可以跑", re.I)
_NEGATED = re.compile(r"n't|\bnot\b|不能|无法|没法|不正常", re.I)
_CLAUSE_END = re.compile(r"[,，;；。!！?？\n]|\.(?!\w)|\b(?:but|yet|while|whereas|however)\b|但是?|可是", re.I)
_SENTENCE_END = re.compile(r"[。!！?？;；\n]|\.(?!\w)")  # not the dot of 'qwen2.5'

_EXPERT_SHARE = 0.78
"""Of a dense model of S parameters, the share in its MLP; a mixture of N such experts shares the rest (attention,
embeddings): N x S holds about S * (0.22 + 0.78 N). Mixtral 8x7B: 45 (46.7 counted); 8x22B: 142 (141)."""


@cache
def _moe_catalogue() -> dict[str, float]:
    """The catalogue's mixtures of experts named 'NxS' ('mixtral-8x7b'), by their name without separators."""
    out = {}
    for n in catalog.model_names():
        if re.search(r"\d+x\d", n):
            out[re.sub(r"[-_ .]", "", n)] = catalog.resolve_model(n).total_params() / 1e9
    return out


def _size(m: re.Match) -> float:
    """Billions of parameters of one name: a mixture of experts ('Mixtral 8x7B') counted by the catalogue where it has
    the name, else estimated from the shared attention (_EXPERT_SHARE), not N whole models."""
    size = float(m.group(2))
    if not m.group(1):
        return size
    n = int(m.group(1))
    key = re.sub(r"[-_ .]", "", re.sub(r"[×*]", "x", m.group(0).lower()))
    return _moe_catalogue().get(key) or size * ((1 - _EXPERT_SHARE) + _EXPERT_SHARE * n)


_NAMED = [(re.compile(rf"(?<![A-Za-z0-9_.-]){p}(?![A-Za-z0-9_.]|[-_ ]?\d+(?:\.\d+)?\s?(?:[xX×*]\s?\d+(?:\.\d+)?\s?)?[bBmM](?![A-Za-z]))",
                        re.I), b)
          for p, b in (
              # models known by a name without their size, where that name has one size only (billions of
              # parameters, from each model's config.json); a size written next to the name wins over these
              (r"chatglm[23]?", 6.2), (r"glm-?4(?!\.)", 9.4), (r"mixtral(?![-_ ]?8x22)", 46.7),
              (r"santacoder", 1.1), (r"flan-?ul2", 19.5), (r"starcoder(?:base)?", 15.5), (r"gpt-?j", 6.05),
              (r"phi-?2", 2.78), (r"phi-?4(?![-_ ]?(?:mini|multimodal))", 14.7),
              (r"qwen-vl(?:-chat)?", 9.6), (r"gpt-?2-xl", 1.56), (r"gpt-?2-large", 0.77), (r"gpt-?2-medium", 0.36),
              (r"(?:flan-)?t5-small", 0.06), (r"(?:flan-)?t5-base", 0.25), (r"(?:flan-)?t5-large", 0.78),
              (r"(?:flan-)?t5-xl", 2.85), (r"(?:flan-)?t5-xxl", 11.1), (r"bert-base", 0.11), (r"bert-large", 0.34),
              (r"bart-base", 0.14), (r"bart-large", 0.41), (r"roberta-base", 0.125), (r"roberta-large", 0.36),
              (r"xlm-roberta-base", 0.28), (r"xlm-roberta-large", 0.56), (r"wav2vec2-base", 0.095),
              (r"wav2vec2-large", 0.32), (r"whisper[-_ ]medium", 0.77), (r"whisper[-_ ]large(?:-v[123])?", 1.55),
              (r"minicpm-?(?:llama3-?)?v[-_ ]?2\.[56]", 8.5), (r"minicpm-?v[-_ ]?2(?:\.0)?", 2.8),
          )]
"""Size-less model names with one size: 'ChatGLM' (6.2B), 'Mixtral' (8x7B), 't5-base', 'StarCoder' (15.5B; StarCoder2
names its sizes). Not DeepSeek-R1/V3: their
checkpoints are FP8, and the rules weigh a named size at 2 bytes a parameter."""


def _sizes(text: str) -> list[tuple[int, float]]:
    """(offset, billions) of every model size the text names, in order."""
    out = [(m.start(), b) for p, b in _NAMED for m in p.finditer(text)]
    for m in _PARAMS.finditer(text):
        if re.match(r"[Aa]\d", m.group(0)) and m.start() > 0 and text[m.start() - 1] in "-_":
            continue  # 'Qwen3-30B-A3B', 'MoE-A2.7B': the active parameters, not the weights held
        if re.search(r"(?<![\d.])910[ABC]\d?$", m.group(0).strip(), re.I):
            continue  # Huawei's Ascend 910B (910B2, 910C) is an NPU, not a 910B-parameter model
        n = _size(m)
        if 0.05 <= n <= 2000:
            out.append((m.start(), n))
    out += [(m.start(), float(m.group(1)) / 10) for m in _YI.finditer(text)]
    out += [(m.start(), int(m.group(1).replace(",", "").replace("_", "")) / 1e9) for m in _PARAM_COUNT.finditer(text)
            if 0.05e9 <= int(m.group(1).replace(",", "").replace("_", "")) <= 2000e9]
    return sorted(out)


_PARAM_COUNT = re.compile(r"(?<!trainable )(?:all|total)?\s?(?:number of )?param(?:eter)?s?(?: in the model)?\s?(?:count)?"
                          r"\s?[:=]\s?(\d{1,3}(?:[,_]\d{3}){2,}|\d{8,})", re.I)
"""A model's parameter count as a program prints it ('Total number of parameters in the model: 3,161,117,824', PEFT's
'all params: 6,742,609,920'); not PEFT's 'trainable params', the adapter's."""


def _failing(text: str, found: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The sizes not named in a clause that says that model works ('yet llama3.2 11b works', '7B的没问题'): a report
    compares the model that fails with one that does not. All of them when every one is said to work."""
    def works(at: int) -> bool:
        start = max((m.end() for m in _CLAUSE_END.finditer(text, 0, at)), default=0)
        end = _CLAUSE_END.search(text, at)
        clause = text[start:end.start() if end else len(text)]
        return bool(_WORKS.search(clause)) and not _NEGATED.search(clause)
    kept = [(at, n) for at, n in found if not works(at)]
    return kept or found


_A = r"(?<![A-Za-z0-9_])"  # edges made of Latin letters and digits only: Chinese written against a word ('了int8量化')
_Z = r"(?![A-Za-z0-9_])"  # is still outside it (Python's \b counts CJK as word characters)
_BITS = _A + r"(?:4|8)[- ]?bit" + _Z + r"(?![- ]?(?:adam|optim|paged))"  # not the 8-bit Adam optimizer
QUANT_WORDS = re.compile(_BITS + r"|load[_-]in[_-][48]bit(?!\s*[=:]\s*False)|" + _A + r"(?:int[48]|nf4|gptq|awq|gguf|(?:nv|mx)?fp4)" + _Z
                         + r"|quantiz|qlora|量化", re.I)
"""The report says the weights are quantized: 4-/8-bit, int4/int8, NF4, FP4 (NVFP4, MXFP4), GPTQ, AWQ, GGUF,
quantization (量化), QLoRA."""
_EIGHT_BIT = re.compile(_A + r"8[- ]?bit" + _Z + r"(?![- ]?(?:adam|optim|paged))|load[_-]in[_-]8bit(?!\s*[=:]\s*False)|"
                        + _A + r"int8" + _Z, re.I)


_ASKED = re.compile(r"(?:need|needs|should|shall|can|could|would|how (?:do i |to )?|whether|try(?:ing)? (?:to )?|want(?:s)? "
                    r"to|wish|需要|要不要|能否|可以|是否|如何|怎么)\W{0,3}(?:\w+\W{1,3}){0,3}$", re.I)


def quantization_stated(text: str) -> re.Match | None:
    """The first mention of quantized weights that states it, not one that asks or wishes for it: 'loaded in 4-bit',
    'QLoRA', 'int8 quantization added' count; 'does a 7B need quantization?', '可以转换为int8吗', 'should I try 4-bit'
    do not (a sentence that ends in a question mark, 吗 or 么, or the mention right after need / should / can / how to),
    nor one refused ('又不想量化', 'without quantization')."""
    text = text or ""
    for m in QUANT_WORDS.finditer(text):
        start = max(text.rfind(c, 0, m.start()) for c in ".!?。！？\n") + 1
        ends = [i for i in (text.find(c, m.end()) for c in ".!?。！？\n") if i >= 0]
        end = min(ends) if ends else len(text)
        question = text[end:end + 1] in ("?", "？") or re.search(r"[吗么]\s*$", text[m.end():end])
        if not question and not _ASKED.search(text[start:m.start()]) and not _refused(text, m, start):
            return m
    return None


def quantization_refused(text: str) -> re.Match | None:
    """A quantization mention the report refuses ('又不想量化降低性能', "I don't want to quantize"): the reporter knows the
    weights would fit quantized and asks for another way."""
    text = text or ""
    return next((m for m in QUANT_WORDS.finditer(text) if _refused(text, m)), None)


def _refused(text: str, m: re.Match, start: int | None = None) -> bool:
    """The words just before the mention, in its sentence, refuse it ('又不想量化', 'without quantization')."""
    if start is None:
        start = max(text.rfind(c, 0, m.start()) for c in ".!?。！？\n") + 1
    return bool(_REFUSED.search(text[max(start, m.start() - 24):m.start()]))


_REFUSED = re.compile(r"(?:不想|不要|不用|不愿|不打算|没有|没|未|without|no|not|don'?t want to|do not want to|rather not|"
                      r"avoid|instead of)\W{0,3}(?:\w+\W{1,3}){0,1}$", re.I)
"""Words before a quantization mention that refuse it ('不想量化降低性能', 'without quantization', "don't want to
quantize"): the weights stay 16-bit."""


def quant_said(text: str) -> str:
    """The weights' quantization as the words state it (quantization_stated), in the estimator's names: 'int8' for
    8-bit, 'nf4' for any other quantization (4-bit, QLoRA, GPTQ...), 'none' (16-bit, every trainer's default) when
    nothing is stated."""
    if quantization_stated(text) is None:
        return "none"
    four = re.search(_A + r"4[- ]?bit" + _Z + r"|load[_-]in[_-]4bit(?!\s*[=:]\s*False)|" + _A + r"nf4" + _Z + r"|qlora",
                     text, re.I)
    return "int8" if _EIGHT_BIT.search(text) and not four else "nf4"


def model_params_b(text: str) -> float | None:
    """Billions of parameters of the model the text is about, or None.

    One size named (maybe several times), leaving out those said to work, is the answer. Where several differ: the
    title (the first line) decides if it names one; else the first size named after the last 'now' ('现在', '目前',
    'currently') in the same sentence ('之前对qwen14b微调没问题，现在对于llama3-8b' is 8); else the size named most
    often, if one is; else None: 'tried llama-7b and llama-13b' does not say which one failed, and a wrong size makes
    a confident wrong cause."""
    text = text or ""
    found = _failing(text, _sizes(text))
    sizes = [n for _, n in found]
    if len(set(sizes)) <= 1:
        return sizes[0] if sizes else None
    title_end = text.find("\n") if "\n" in text else len(text)
    in_title = {n for at, n in found if at < title_end}
    if in_title:
        return in_title.pop() if len(in_title) == 1 else None
    for now in reversed(list(_NOW.finditer(text))):
        end = _SENTENCE_END.search(text, now.end())
        after = [n for at, n in found if now.end() <= at < (end.start() if end else len(text))]
        if after:
            return after[0]
    (top, k), *rest = Counter(sizes).most_common()
    return top if k > rest[0][1] else None


def smallest_model_params_b(text: str) -> float | None:
    """The smallest model size the text names among those not said to work ('全参量微调7B ... 压缩到5.7B' is 5.7), or
    None: a bound, for a verdict every named model shares (if even the smallest one's training states exceed the card,
    the one that failed does too), never the model's size itself."""
    sizes = [n for _, n in _failing(text or "", _sizes(text or ""))]
    return min(sizes) if sizes else None


# --- the GPUs -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gpus:
    count: int | None
    """GPUs the report says the machine has (not processes): '8 x A100', '2 16G A4000', '8*80G', '4卡', '七张h100',
    '双卡', 'two 4090s', '2 GPUs'; 1 for '单卡', 'single GPU'."""
    memory_bytes: int | None
    """One GPU's memory: a size said per card ('40GB each', '每块80G', '192G per GPU'), else one written next to the
    card ('A100 80GB', '3060laptop 6GB', '8张80G的卡'), else one said of GPU memory ('24G显存'), else the catalogue's
    card for the name (the larger variant when a card comes in several sizes). Never a usage ('占用了13G', 'uses 30GB',
    'Tried to allocate') or host RAM ('128G内存', '512GB RAM')."""
    name: str = ""


_NUMBER = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "a pair of": 2,
           "dual": 2, "一": 1, "二": 2, "两": 2, "双": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
           "九": 9, "十": 10}
"""Counts written as words: English one..eight, 'a pair of', 'dual'; Chinese numerals and 双 (双卡 = 2); 单卡 is
_SINGLE's."""
_N = r"(?<![A-Za-z0-9_.第一二两三四五六七八九十])(\d{1,2}|one|two|three|four|five|six|seven|eight|a pair of|dual|[一二两双三四五六七八九十])"
_CARD = (r"(?:RTX\s?|GTX\s?)?(?:[AHLV]\d{2,3}S?|P40|P100|[LT]4|A[2-6]000|[12345]0[5-9]0(?:\s?Ti(?:\s?Super)?|\s?Super|D)?|MI\d{3}\w?|B200|"
         r"H20|L40S?)(?![0-9])")
_VENDOR = r"(?:(?:NVIDIA|Tesla|GeForce|AMD)[\s-])?"
_ONE_SIZE = re.compile(r"(?<![\d.])(\d{1,3})\s?G(?:B|iB)?(?![A-Za-z0-9])", re.I)
"""A memory size: '80G', '24 GB', '40GiB', '24g'; not the '94 GiB' of '12.94 GiB'."""
_SIZE = _ONE_SIZE.pattern.replace("(\\d{1,3})", "\\d{1,3}")  # the same, without a group, inside longer patterns
_MEASURE = r"(?:张|块|个|台)"
_GPU_WORD = r"(?:显卡|卡|GPUs?(?![A-Za-z])|gpus?(?![A-Za-z])|cards)"

_COUNTS = [re.compile(p, re.I) for p in (
    # '8 A100', '8*A100', '七张h100', 'two 24g 4090s', '2 16G A4000', '5个24G的P40', '4x Tesla V100'
    # ('双3090', '两A100': a Chinese count written against the card)
    rf"{_N}\s?(?:[x×*]\s?|{_MEASURE}\s?|\s|(?<=[双两二三四五六七八]))(?:{_SIZE}\s?(?:的\s?)?)?{_VENDOR}{_CARD}",
    # 'V100-32G * 8', 'A100-80Gx8'
    rf"(?<![A-WYZa-wyz0-9]){_CARD}(?:[-\s]?\d{{2,3}}\s?G(?:B|iB)?)?\)?\s?[x×*]\s?(\d{{1,2}})\b",
    # '8*80G', '8张80G的卡', '6块24G显卡', '5个24G的P4090', 'two 48GB GPUs': a count and a size, no card the catalogue
    # knows
    rf"{_N}\s?(?:[x×*]\s?{_SIZE}|{_MEASURE}\s?{_SIZE}\s?的?\s?(?:{_GPU_WORD}|[A-Za-z]+\d{{2,4}}))|{_N}\s{_SIZE}\s?{_GPU_WORD}",
    # 'Number of gpus: 8', 'num_gpus=8', '2 GPUs', '8卡', '四张卡', '两个GPU', '双卡', 'two cards'
    r"(?:number of gpus|num[_ ]gpus|n_gpus|gpus)\s*[:=]\s*(\d{1,2})\b(?!\s?,\s?\d)",  # not 'gpu:1', 'gpus=0,1
    rf"{_N}\s?{_MEASURE}?\s?{_GPU_WORD}",
    # '4x RTX 6000 Ada', '2x GH200': a card name the pattern above does not know, with a digit in it
    rf"{_N}\s?[x×*]\s?{_VENDOR}(?:RTX\s|GTX\s)?[A-Z]+\d+\w*",
)]
_SINGLE = re.compile(r"单卡|single[- ](?:gpu|card|core)|one gpu|a single (?:\w+ )?gpu|(?<![\d.])1 gpu\b", re.I)


def _count(text: str) -> int | None:
    """The first form that names a count, in the order of _COUNTS (a card named beats a bare count)."""
    for p in _COUNTS:
        m = p.search(text)
        if m:
            n = next(g for g in m.groups() if g)
            n = int(n) if n.isdigit() else _NUMBER[n.lower()]
            if n:
                return n
    m = _VISIBLE.search(text)
    if m:
        return len([d for d in m.group(1).split(",") if d.strip()])
    one_card = any(not m.group(0).endswith("s") for m in _ONE_CARD.finditer(text))  # 'A100s' is a plural, 'L40S' a card
    return 1 if _SINGLE.search(text) or one_card else None


_ONE_CARD = re.compile(rf"(?:\bon|\busing|\bwith|\bhave|\bhas|\bmy|\bin)\s+(?:a|an|one|the|my)?\s*{_VENDOR}"
                       rf"(?:RTX\s?|GTX\s?)?{_CARD}(?![A-Za-z0-9])(?!\s?(?:GPUs|cards|s\b))|(?:一张|一块|单张|单块)\s?{_CARD}", re.I)
"""One card named with nothing that counts it ('on a V100 32G', 'using an A100 40GB', 'my 4090', '一张A100'): a
single GPU. A plural ('on A100s', 'A100 GPUs') says nothing about how many."""


_VISIBLE = re.compile(r"CUDA_VISIBLE_DEVICES?\s?=\s?[\"']?(\d{1,2}(?:\s?,\s?\d{1,2})*)")
"""The GPUs a launch makes visible ('CUDA_VISIBLE_DEVICES=0,1,2', the S left off as people type it): counted when no
count is said in words, since a launch sees no more GPUs than these."""


_EACH = re.compile(rf"{_SIZE}\s?(?:each|apiece|per (?:gpu|card|device)|/\s?(?:gpu|card))|"
                   rf"(?:each|per (?:gpu|card)|每块|每张|每个|每卡|单卡)\s?(?:{_GPU_WORD}\s?)?(?:is\s|has\s|with\s|为|是)?{_SIZE}",
                   re.I)
"""A size said of each card: '40GB each', '192G per GPU', '每块80G', '单卡40G'."""
_NEXT_TO_CARD = re.compile(rf"(?<![A-WYZa-wyz0-9])({_CARD})(?:[a-z]{{0,7}})(?:\s?(?:laptop|mobile|GPU|显卡|NVL|NVM|PCIe|SXM\d?))*"
                           rf"[\s(（:：,-]{{0,3}}{_SIZE}|{_SIZE}\s?(?:的\s?)?{_VENDOR}({_CARD})", re.I)
"""A size written next to the card: 'A100 80GB', 'V100-32G', '3060laptop 6GB', 'RTX 4090 Laptop GPU 16GB', '24g 4090s'."""
_COUNT_SIZE = re.compile(rf"{_N}\s?(?:[x×*]|{_MEASURE})\s?{_SIZE}|{_N}\s{_SIZE}(?=\s?{_GPU_WORD})", re.I)
"""The size in '8*80G', '8张80G的卡', 'two 48GB GPUs'."""
_SAID_OF_GPU = re.compile(rf"{_SIZE}\s?(?:显存|现存|VRAM|of VRAM|GPU memory|GPU RAM|(?:of )?(?:graphics|video) (?:card )?memory)|"
                          rf"(?:gpu|card|显卡|显存|VRAM)\s?"
                          rf"(?:with\s|of\s|is\s|为|是|[:：]\s?)?{_SIZE}|\bon (?:an? )?{_SIZE}|"
                          # 'my 4GB GPU', 'a 12 GB card'
                          rf"\b(?:my|our|an?|the|this)\s{_SIZE}\s?(?:GPU|graphics card|video card|card)\b", re.I)
"""A size said of GPU memory: '24G显存' (and '24G现存', its common homophone typo), 'gpu with 24G', '显存：24G', 'on a 24GB',
'24GB graphics memory', 'my 4GB GPU'."""
_USAGE_BEFORE = re.compile(r"(?:占用|占了|用了|使用了|用掉|消耗|used|uses|using|allocate|allocated|reserved|occupied|"
                           r"occupies|consumed|consumes|takes|took|free)(?:\s|了|[:：~≈]|约|大概|大约|为|是|about\s|around\s|"
                           r"approximately\s|roughly\s|up to\s|only\s|just\s|\d{1,2}\s?[xX×*]\s?)*$", re.I)
"""A usage, not a capacity: '占用了13G', '占用大约为8 X 18G', 'uses 30GB', 'Tried to allocate 20.00 GiB'; not 'using a
24GB card'."""
_USAGE_AFTER = re.compile(r"^\s?(?:used|in use|free|allocated|reserved|occupied|被占用|已用)", re.I)
_HOST_BEFORE = re.compile(r"(?:内存|(?<!GPU )(?<!V)RAM|CPU memory|host memory|system memory|CPU RAM)\s?(?:is\s|of\s|为|是|[:：]\s?)?$",
                          re.I)
_HOST_AFTER = re.compile(r"^\s?(?:of\s)?(?:内存|(?:system |host |CPU )?RAM\b|DDR|system memory|host memory|CPU memory|swap|disk|"
                         r"SSD|硬盘)", re.I)
_MIN_CARD_GIB = 4  # a smaller size is a tensor or a chunk ('the biggest chunk on the GPU is 2gb')
_MAX_CARD_GIB = 288  # the largest card there is (B300): a larger 'size' is a machine's total or host RAM


def _capacity(text: str, m: re.Match, per_card: bool = False) -> int | None:
    """The size inside match m as bytes, unless the words around it make it a usage or host RAM (not where the match
    says it is per card: '每块卡40G内存' is the card's memory, which people also call 内存)."""
    s = _ONE_SIZE.search(text, m.start(), m.end())
    if s is None:
        return None
    before, after = text[max(0, s.start() - 24):s.start()], text[s.end():s.end() + 16]
    # a size followed by the cards it belongs to is their capacity, whatever verb comes before ('I used 8*80G GPUs')
    of_cards = re.match(r"\s?(?:GPUs?|cards?|显卡|卡)\b", after, re.I) is not None
    if (_USAGE_BEFORE.search(before) and not of_cards) or _USAGE_AFTER.search(after):
        return None
    if not per_card and (_HOST_BEFORE.search(before) or _HOST_AFTER.search(after)):
        return None
    gib = int(s.group(1))
    return gib * GIB if _MIN_CARD_GIB <= gib <= _MAX_CARD_GIB else None


def _first_size(pattern: re.Pattern, text: str) -> tuple[int | None, re.Match | None]:
    """The first capacity the pattern finds, with its match."""
    for m in pattern.finditer(text):
        b = _capacity(text, m, per_card=pattern is _EACH)
        if b:
            return b, m
    return None, None


_INSTANCE = re.compile(r"(?<![A-Za-z0-9])(g4dn|g5|g6e|g6|p3|p4de|p4d|p5)\.(\d{0,2}xlarge|metal)\b", re.I)
_INSTANCE_CARD = {"g4dn": ("T4", 16), "g5": ("A10G", 24), "g6": ("L4", 24), "g6e": ("L40S", 48), "p3": ("V100", 16),
                  "p4d": ("A100", 40), "p4de": ("A100", 80), "p5": ("H100", 80)}
"""AWS GPU instance families and the card each carries ('g4dn.2xlarge' is one 16 GB T4): a report that names only its
instance still says its card."""
_INSTANCE_COUNT = {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8, "metal": 8}
"""GPUs by instance size where it is not one (g4dn/g5/g6 12xlarge and 24xlarge: 4; 48xlarge and metal: 8); the p3
sizes and the 8-GPU p4/p5 families are in _instance."""


def _instance(text: str) -> Gpus | None:
    """The GPUs of an AWS instance type named in the text, or None."""
    m = _INSTANCE.search(text)
    if m is None:
        return None
    family, size = m.group(1).lower(), m.group(2).lower()
    card, gib = _INSTANCE_CARD[family]
    if family in ("p4d", "p4de", "p5"):
        count = 8
    elif family == "p3":
        count = {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}.get(size)
    else:
        count = _INSTANCE_COUNT.get(size, 1)
    return Gpus(count, gib * GIB, card)


def gpus(text: str) -> Gpus:
    """How many GPUs the text says, and one GPU's memory (a cloud instance's card where no card is named)."""
    text = text or ""
    if not re.search(rf"(?<![A-WYZa-wyz0-9]){_CARD}", text, re.I) and _instance(text) is not None:
        return _instance(text)
    card = re.search(rf"(?<![A-WYZa-wyz0-9]){_CARD}", text, re.I)
    name = card.group(0).strip() if card else ""
    known = _catalogue_memory(name) if card else None
    mem, near = _first_size(_NEXT_TO_CARD, text)
    if near is not None:
        name = (near.group(1) or near.group(2)).strip()
    each, _ = _first_size(_EACH, text)
    if each is not None and not (known and each > known):
        mem = each  # said per card: beats the catalogue's larger variant and a size next to the name
    if mem is None and known is None:
        mem, _ = _first_size(_COUNT_SIZE, text)  # '8*80G': not where a known card is named apart from it
    if mem is None:
        said, _ = _first_size(_SAID_OF_GPU, text)
        mem = said if said is None or not known or said <= known else None  # 'needs 48GB of VRAM' on T4s
    if mem is None:
        mem = known
    return Gpus(_count(text), mem, name)


def card_lacks_bf16(text: str) -> str | None:
    """The card the text names, where the catalogue says it has no bf16 (V100, T4, P100, P40, RTX 2080 Ti: before
    Ampere), or None (no card named, one with bf16, or one the catalogue does not know)."""
    card = re.search(rf"(?<![A-WYZa-wyz0-9]){_CARD}", text or "", re.I)
    if not card:
        return None
    found = _catalogue_cards(card.group(0).strip())
    return card.group(0).strip() if found and not any(g.bf16 for g in found) else None


def _catalogue_cards(card: str) -> list:
    """The catalogue's cards a name stands for: every variant of a shared name (A100 -> 40 and 80 GB), [] for one the
    catalogue does not know."""
    key = re.sub(r"[\s-]", "", card.lower())
    found = []
    for n in catalog.gpu_names():
        base = n.split("-")[0]
        for k in (key, key[:-1] if key.endswith("s") else key):  # '8 A100s': a plural, where no card ends in s
            if k in (base, n.replace("-", "")):
                found.append(catalog.get_gpu(n))
                break
    if not found:
        try:
            found.append(catalog.get_gpu(key))
        except Exception:  # not in the catalogue
            return []
    return found


def _catalogue_memory(card: str) -> int | None:
    """The catalogue's memory for a card's name; the largest variant when the name is shared (A100 40/80 GB): an
    argument that the weights do not fit then holds for every variant."""
    found = _catalogue_cards(card)
    return max(g.memory_bytes for g in found) if found else None
