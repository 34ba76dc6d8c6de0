"""What a report says in words about the model and the machine: 'Llama 3 70B on an A100', '8 x A100 80GB',
'单卡40G', 'Number of gpus: 8', 'its 192G per GPU'. Read only where no script, config or OOM message says it, and
used as numbers-strength evidence (a rule quotes the words it read).

    model_params_b("Running Llama 3 70B on A100 GPU")   # 70.0
    gpus("V100-32G * 8")                                # Gpus(count=8, memory_bytes=34359738368, name='V100-32G')
"""

import re
from dataclasses import dataclass

from qlorafit.core import catalog
from qlorafit.core.sizes import GIB

_PARAMS = re.compile(r"(?<![A-Za-z0-9_.])(?:[A-Za-z][\w.]*?[-_ ]?)?(?:(\d+)\s?[x×]\s?)?(\d+(?:\.\d+)?)\s?[bB](?![A-Za-z0-9])"
                     r"(?!\s*(?:tokens|samples|words|bytes))")
"""A parameter count in a model's name or the report's words: 'llama3-70b', 'Qwen1.5-7B-Chat', 'a 13B', '4B的模型',
'8x7B' (a mixture of experts: all experts are weights). Not '12 bytes', '4bit', '1.5B tokens'."""


def model_params_b(text: str) -> float | None:
    """Billions of parameters of the first model the text names by size, or None."""
    for m in _PARAMS.finditer(text or ""):
        n = float(m.group(2)) * (int(m.group(1)) if m.group(1) else 1)
        if 0.05 <= n <= 2000:
            return n
    return None


@dataclass(frozen=True)
class Gpus:
    count: int | None
    """GPUs the report says the machine has (not processes): '8 x A100', '2 16G A4000', '4卡', '双卡', '2 GPUs';
    1 for '单卡', 'single GPU'."""
    memory_bytes: int | None
    """One GPU's memory: from a size written next to it ('A100 80GB', '4090 24G显存', '192G per GPU') or the
    catalogue's card for the name (the larger variant when a card comes in several sizes)."""
    name: str = ""


_CARD = (r"(?:RTX\s?|GTX\s?)?(?:[AHLV]\d{2,3}S?|[LT]4|A[2-6]000|[2345]0[5-9]0(?:\s?Ti)?|MI\d{3}\w?|B200|H20|L40S?)"
         r"(?![0-9])")
_SIZE = r"(\d{2,3})\s?G(?:B|iB)?(?![A-Za-z0-9])"
_COUNT_FIRST = re.compile(rf"(?<![A-Za-z0-9_.])(\d{{1,2}})\s?(?:[x×*]\s?|张\s?|块\s?|\s)(?:\d{{2,3}}\s?G(?:B|iB)?\s)?"
                          rf"(?:NVIDIA\s)?({_CARD})", re.I)
_CJK_COUNT = re.compile(r"(双|两|二|三|四|六|八)\s?(?:张|块|台)?\s?(?:卡|显卡|GPU)")
_CJK_DIGIT = {"双": 2, "两": 2, "二": 2, "三": 3, "四": 4, "六": 6, "八": 8}
"""'双卡4090', '两张A100', '八卡': a card count written with a Chinese numeral."""
_COUNT_AFTER = re.compile(rf"(?<![A-WYZa-wyz0-9])({_CARD})(?:[-\s]?(?:\d{{2,3}})\s?G(?:B|iB)?)?\)?\s?[x×*]\s?(\d{{1,2}})\b", re.I)
_COUNT_WORDS = re.compile(r"(?:number of gpus|num[_ ]gpus|gpus?)\s*[:=]\s*(\d{1,2})\b|(\d{1,2})\s?(?:GPUs|gpus|cards|张?卡)"
                          r"(?![A-Za-z])", re.I)
_SINGLE = re.compile(r"单卡|single[- ]gpu|one gpu|a single (?:\w+ )?gpu|1 gpu\b", re.I)
_CARD_SIZE = re.compile(rf"(?<![A-WYZa-wyz0-9])({_CARD})(?![0-9])[\s(-]{{0,2}}(?:{_SIZE})?", re.I)
_PER_GPU = re.compile(rf"{_SIZE}\s?(?:per gpu|each gpu|显存|VRAM|of VRAM|GPU memory)|(?:gpu|card|显卡)\s(?:with\s)?{_SIZE}|"
                      rf"(?:单卡|卡)\s?{_SIZE}|\bon (?:an? )?{_SIZE}|{_SIZE}\s(?:NVIDIA\s)?(?={_CARD})", re.I)


def gpus(text: str) -> Gpus:
    """How many GPUs the text says, and one GPU's memory."""
    text = text or ""
    count = None
    m = _COUNT_FIRST.search(text)
    if m:
        count = int(m.group(1))
    else:
        m = _COUNT_AFTER.search(text) or None
        if m:
            count = int(m.group(2))
        else:
            w = _COUNT_WORDS.search(text)
            cjk = _CJK_COUNT.search(text)
            if w:
                count = int(w.group(1) or w.group(2))
            elif cjk:
                count = _CJK_DIGIT[cjk.group(1)]
            elif _SINGLE.search(text):
                count = 1
    mem, name = None, ""
    p = _PER_GPU.search(text)
    if p:
        mem = int(next(g for g in p.groups() if g)) * GIB
    c = _CARD_SIZE.search(text)
    if c:
        name = c.group(0).strip(" (-")
        if mem is None and c.group(2):
            mem = int(c.group(2)) * GIB
        known = _catalogue_memory(c.group(1))
        if mem is None or (known and not c.group(2) and mem > known):
            mem = known  # a size larger than the named card has is something else ('needs 48GB of VRAM' on T4s)
    return Gpus(count, mem, name)


def _catalogue_memory(card: str) -> int | None:
    """The catalogue's memory for a card's name; the largest variant when the name is shared (A100 40/80 GB): an
    argument that the weights do not fit then holds for every variant."""
    key = re.sub(r"[\s-]", "", card.lower())
    sizes = []
    for n in catalog.gpu_names():
        base = n.split("-")[0]
        for k in (key, key[:-1] if key.endswith("s") else key):  # '8 A100s': a plural, where no card ends in s
            if k in (base, n.replace("-", "")):
                sizes.append(catalog.get_gpu(n).memory_bytes)
                break
    if not sizes:
        try:
            sizes.append(catalog.get_gpu(key).memory_bytes)
        except Exception:  # not in the catalogue: the words gave no size
            return None
    return max(sizes)
