"""A memory shortage told in words, read from its parts instead of from a list of phrases: a memory noun (memory,
RAM, VRAM, 显存, 内存, with its qualifier: GPU/CUDA/host/CPU/system) and a shortage word (insufficient, not enough,
ran out, exhausted, full, exceeded, 不足, 不够, 爆, 满) next to each other in either order, in the same clause.

    shortage("causing insufficient CPU memory")   # ('cpu', 'insufficient CPU memory')
    shortage("the VRAM is not enough for it")     # ('cuda', 'VRAM is not enough')
    shortage("this saves memory")                 # None

Phrase lists (parse._GPU_WORDS, parse._CPU_WORDS) name the forms seen before; a new report says the same thing in
another order or with another qualifier ('insufficient CPU memory' where 'CPU memory is not enough' was known), which
the parts catch. The memory's kind comes from the noun: VRAM, 显存 and a GPU/CUDA/device qualifier are the GPU's;
RAM, 内存 and a host/CPU/system/node qualifier are the host's; a bare 'memory' is left to the caller (None).
"""

import re

MEMORY_TALK = re.compile(r"\bmemory\b|(?<![\w-])v?RAM\b|显存|内存|メモリ|메모리", re.I)
"""Memory named at all: a report brought to the doctor that talks about memory is about running out of it."""

_GPU_QUAL = r"(?:gpu|cuda|video|device|card|显卡)"
_HOST_QUAL = r"(?:host|cpu|system|node|main|physical|shared)"
_NOUN = rf"(?:{_GPU_QUAL}|{_HOST_QUAL})?[ -]?(?:memory|mem(?![\w])|v?ram(?![\w])|显存|内存|メモリ|메모리)"
_PARTS = re.compile(rf"({_GPU_QUAL}|{_HOST_QUAL})?[ -]?(memory|mem(?![\w])|v?ram(?![\w])|显存|内存|メモリ|메모리)", re.I)
_BEFORE = (r"(?:insufficient|not enough|lack of|shortage of|out of|ran out of|run(?:s|ning)? out of|exhaust\w*|"
           r"exceed\w*(?: the)?|(?:use[sd]?|using|eat(?:s|en|ing)?|ate|fill(?:s|ed|ing)?|t(?:akes?|ook|aken|aking)) up "
           r"(?:all )?(?:of )?(?:the )?)")
_AFTER = (r"(?:usage |consumption |use )?(?:is |was |are |were |got |gets |became |becomes |seems |being )?"
          r"(?:still |completely |totally |quickly |all )?"
          r"(?:insufficient|not enough|too (?:small|little|low)|exhausted|full(?![\w-])|maxed out|used up|filled up|"
          r"runs? out|ran out|running out|explod\w*|blows? up|blew up|"
          r"(?:spik\w*|go(?:es)?|went|climb\w*|grows?|grew|rises|rose|shoots?|shot|jump\w*|peak\w*|reach\w*|hits?)"
          r"(?: up)? (?:to )?(?:over|above|beyond|more than) ~?\d|"
          r"不足|不够|溢出|爆|满了|占满|超(?:出|过|了|限)|が?足りな|부족)")
_SHORTAGE = re.compile(rf"\b{_BEFORE}\s(?:the |my |our |available |free |enough |all )*{_NOUN}|"
                       rf"(?<![\w]){_NOUN}\s?{_AFTER}", re.I)


def shortage(text: str) -> tuple[str | None, str] | None:
    """(kind, words) of the first memory shortage told in words: kind 'cuda' for the GPU's memory, 'cpu' for the
    host's, None for a bare 'memory' (the caller decides from the rest of the report); None when there is none."""
    m = _SHORTAGE.search(text or "")
    if m is None:
        return None
    p = _PARTS.search(m.group(0))
    qual, noun = (p.group(1) or "").lower(), p.group(2).lower()
    if noun in ("vram", "显存") or re.fullmatch(_GPU_QUAL, qual, re.I):
        return "cuda", m.group(0)
    if noun in ("ram", "内存") or re.fullmatch(_HOST_QUAL, qual, re.I):
        return "cpu", m.group(0)
    return None, m.group(0)
