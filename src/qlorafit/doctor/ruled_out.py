"""What the report rules out by what it says worked: a run that fits at a shorter length or a smaller batch has room
for everything that does not grow with them (the weights, one replica per GPU, the optimizer state), so a cause made
of those cannot be what ran out; what grows with the length or the batch is.

    smaller_works("it trains fine up to 32k, above that it OOMs")   # a match
    smaller_works("works with 2 GPUs")                               # None: a GPU count is no smaller step

Used by rules.diagnose_causes to rank such causes last, with the words quoted, unless their own evidence is proven
(a traceback or a message that names them).
"""

import re

STATIC_CAUSES = ("ddp_replica", "no_quant", "load_too_big")
"""Causes whose memory does not depend on the length or the batch: the weights (unquantized, or larger than the
card), a replica of them (and of a full fine-tune's states) on every GPU."""

_KNOB = (r"(?:(?:max[_ -]?)?(?:seq(?:uence)?[_ -]?)?len(?:gth)?|cutoff[_ -]len|context(?: length)?|"
         r"(?:micro[_ -]?)?batch(?:[_ -]?size)?|bs|tokens)")
_NUMBER = (r"~?\d+(?:\.\d+)?\s?[kK]?(?![0-9A-Za-z.])(?!\s?(?:x\s?)?(?:GPUs?|gpus?|cards?|nodes?|[bB](?![A-Za-z])|GB|G(?![A-Za-z])|"
           r"GiB|[AHLVT]\d|RTX|GTX|NVIDIA|卡|张|台))")
"""A length or a batch, not a GPU count, a card, a parameter count or a memory size."""
_SMALLER_WORKS = re.compile(
    # 'works up to 32k', 'trains fine with batch size 2', 'runs at a length of 2048'
    rf"\b(?:works?|worked|trains?|trained|runs?|ran|fits?|is fine|was fine|starts?|started)\s(?:fine\s|well\s|ok\s|"
    rf"normally\s)?(?:up to|until|till|below|under|at|with)\s(?:a\s|an\s)?(?:--)?(?:{_KNOB}\s?(?:of\s|=\s?|:\s?)?)?{_NUMBER}|"
    # 'with max_length 2048 it works', 'at batch size 1 it runs'
    rf"\b(?:with|at|using|setting|set)\s(?:a\s|the\s)?(?:--)?{_KNOB}\s?(?:of\s|=\s?|:\s?|to\s)?{_NUMBER}[^.\n]{{0,25}}?"
    rf"\b(?:it\s)?(?:works|worked|runs|ran|fits|trains|trained|starts|started|is fine|was fine)\b|"
    # 'below 4096 tokens it is fine', 'up to 64k it trains'
    rf"\b(?:below|under|up to)\s{_NUMBER}\s?(?:tokens\s)?[^.\n]{{0,12}}?\b(?:it\s)?(?:works|runs|fits|trains|is fine)\b|"
    # '可以训到64k', '32k以下都正常', '超过64k就OOM', '加上--max_length 2048也可以启动'
    rf"(?:可以|能够?)(?:训|跑|训练|微调)到\s?{_NUMBER}|{_NUMBER}\s?(?:以下|以内|之内)(?:都)?(?:可以|正常|没问题|能跑)|"
    rf"超过\s?{_NUMBER}\s?(?:就|会|则|的话)?\s?(?:OOM|爆|溢出|报错)|"
    rf"(?:--)?{_KNOB}\s?=?\s?{_NUMBER}\s?(?:也|就|都)?(?:可以|能)(?:启动|跑|训练|运行|正常)", re.I)


_BATCH_TRIED = re.compile(r"regardless of (?:the )?batch|"
                          # a batch of 1 that does not fit: nothing smaller to try ('1 batch，A100 80G显存装不下')
                          r"(?:\b1 ?batch\b|batch[_ ]?size\W{0,3}(?:of |=\s?|is )?1\b)[^.\n。]{0,30}?(?:装不下|放不下|跑不(?:动|起来)|"
                          r"(?:does ?n[o']t|won'?t|can'?t|can ?not) fit)|"
                          r"(?:even|still)[^.\n]{0,20}batch[_ ]?size\W{0,3}(?:(?:set(?:ting)? )?(?:to |of |=\s?))?1\b|"
                          r"batch[_ ]?size\W{0,3}(?:of |=\s?|is )?1\b[^.\n]{0,30}(?:still|also|even)|"
                          r"(?:whatever|any|no matter (?:what|the)) batch[_ ]?size|batch[_ ]?size (?:does not|doesn't) "
                          # 'no matter how small the batch size is'
                          r"(?:matter|help)|no matter how (?:small|low|much I (?:reduce|lower|decrease)) (?:the |my )?"
                          r"batch[_ ]?size|batch[_ ]?size (?:does not|doesn't) "
                          r"(?:matter|help)", re.I)
"""The report says it fails even at a micro-batch of 1, or at any batch."""


_BATCH_ONE = re.compile(r"(?:(?:micro|per[_ ]device[_ ](?:train[_ ])?|train[_ ])?batch[_ ]?size|\bbs|\bbatch)\s?"
                        r"(?:(?:had |has |have |was |is )?(?:been )?set(?:ting)? )?(?:==?|:|to|of|"
                        r"at|is|was|设为|设置为|设置成|设成|为|改为|改成|调为|调到|(?:已经|已)?(?:调整|调|改|设置?)(?:到|为|成))?"
                        r"\s?1(?![\d.])", re.I)
_STILL = re.compile(r"\b(?:still|even|also|again|anyway|regardless|same (?:error|problem|issue|OOM)|does ?n[o']t help|"
                    r"did ?n[o']t help|no (?:luck|help|change))\b|还是|仍然|依然|仍|也(?:会|是|还|一样)?(?:OOM|oom|爆|报|溢出|不行)|"
                    r"都(?:会|报|是)|不起作用|没用|无效|照样", re.I)
"""The failure stays: 'still', 'even', 'same error'; 还是, 仍然, 依然, 也会爆, 不起作用."""


def sentence_around(text: str, m: re.Match) -> str:
    """The sentence of `text` that holds match m: from the last '.', '。' or line break before it to the next '. ',
    '。', '?' or line break after it (a dot inside a name, 'ds_z3_config.json', ends nothing)."""
    start = max(text.rfind(".", 0, m.start()), text.rfind("。", 0, m.start()), text.rfind("\n", 0, m.start())) + 1
    ends = [i for i in (text.find(". ", m.end()), text.find("。", m.end()), text.find("?", m.end()),
                        text.find("\n", m.end())) if i >= 0]
    return text[start:min(ends) if ends else len(text)]


def batch_one_fails(text: str) -> re.Match | None:
    """The report says it still runs out at a batch of 1 ('even with a batch size of 1', 'I set the batch size to 1
    but still get OOM', 'bs=1 还是oom', 'regardless of batch'): what ran out does not shrink with the batch. A batch of
    1 counts when a word that the failure stayed stands in the same sentence."""
    flat = re.sub(r"\s+", " ", text or "")
    m = _BATCH_TRIED.search(flat)
    if m:
        return m
    for m in _BATCH_ONE.finditer(flat):
        sentence = sentence_around(flat, m)
        if _STILL.search(sentence) and re.search(r"OOM|oom|out of memory|爆|溢出|不足|error|错|fail|不起作用|不行|没用|无效",
                                                 sentence, re.I):
            return m
        # the run that failed was at a batch of 1, told as its setting beside the failure: 'I run out of memory while
        # training (with batch size set to 1 ...)', 'I ... received OOM. I've set batch size to 1' (the sentence or
        # the one before it), when nothing in them says some run worked
        start = flat.find(sentence)
        before = sentence_around(flat, re.compile(r"\S").search(flat, max(0, start - 3))) if start > 2 else ""
        near = sentence if before == sentence else before + " " + sentence
        if _SET_AT_ONE.search(flat[max(0, m.start() - 40):m.end()]) and _FAILED.search(near) and not _WORKED.search(near):
            return m
    return None


_SET_AT_ONE = re.compile(r"(?:\b(?:with|at|using)\s(?:a\s|the\s)?|(?:I've|I have|I|we've|we have|we) (?:already )?"
                         r"(?:set|use[d]?|tried|reduced|lowered)\s(?:the\s|my\s)?)(?:micro[_ ]|per[_ ]device[_ ](?:train[_ ])?)?"
                         r"(?:batch[_ ]?size|bs)\b", re.I)
"""A batch of 1 given as the failing run's setting ('with batch size set to 1', "I've set batch size to 1")."""
_FAILED = re.compile(r"\bOOM|out of memory|run(?:s|ning)? out\b|ran out\b|爆显存|显存不足", re.I)
_WORKED = re.compile(r"\b(?:works?|worked|working|fine(?![-_ ]?tun)|succeed\w*|success\w*|ok(?:ay)?|fits?|fitted|passes|passed)\b|"
                     r"可以|正常|成功", re.I)


_SOME_DATA_FAILS = re.compile(
    # one input found to be the trigger: 'this was due to a specific sentence of 2115 characters'
    r"(?:due to|caused by|because of|triggered by) (?:a |one |this )?(?:specific|particular|single|certain|long|very long) "
    r"(?:sentence|sample|example|input|row|record|document|text|conversation)\b|"
    r"\b(?:only )?(?:on|at|for|with) (?:certain|some|specific|particular|a few|a handful of) (?:of the )?(?:samples?|"
    r"examples?|data(?:points?)?|batches|inputs?|rows?|records?|conversations?|questions?|prompts?|queries)\b[^.\n]{0,20}?(?:\bit )?(?:OOM|runs? out|ran "
    r"out|fails?|crash\w*|out of memory)|(?:OOM|runs? out|ran out|fails?|crash\w*|out of memory)[^.\n]{0,20}?\b(?:only )?(?:on|at|"
    r"for|with) (?:certain|some|specific|particular|a few) (?:samples?|examples?|data|batches|inputs?|rows?|records?)\b|"
    r"(?:一定|某些|部分|特定|个别|某个|某条|某一)的?(?:数据|样本|batch|批次|问题|提问|输入|请求|文本|prompt)[^，。,.\n]{0,6}?"
    r"(?:出现|会|就|时)?\s?(?:OOM|oom|爆|溢出)|"
    # one input found to cause it: 'found one slide cause the OOM', 'one video causes the OOM'
    r"\bone (?:\w+ )?(?:slide|sample|example|image|document|doc|file|video|sentence|input|text|record|row|audio|batch)"
    r" (?:that )?caus\w* (?:the |an? )?(?:OOM|out of memory|crash)",
    re.I)
"""The report says it runs out only on certain samples ('OOM on certain batches', '在一定数据出现OOM'): every other batch
fit, so what does not grow with the input fits too, and the samples that fail are the long ones."""


def some_data_fails(text: str) -> re.Match | None:
    return _SOME_DATA_FAILS.search(re.sub(r"\s+", " ", text or ""))


_BATCH_HELPS = re.compile(r"(?:lower|reduc|decreas|chang|halv|smaller)\w*[^.\n]{0,20}batch[_ ]?size[^.\n]{0,30}"
                          r"(?:fix|work|help|solv|avoid)\w*|"
                          r"batch[_ ]?size[^.\n]{0,30}(?:fixes|fixed|works|solves|solved)", re.I)


def batch_helps(text: str) -> re.Match | None:
    """The report says a smaller batch made it run ('if I manually set a smaller batchsize it works fine', 'reducing
    the batch size fixed it'): the batch is the lever (the training step's, or an evaluation's own)."""
    return _BATCH_HELPS.search(text or "")


def smaller_works(text: str) -> re.Match | None:
    """The report says the run works at a shorter length or a smaller batch (not on more GPUs)."""
    return _SMALLER_WORKS.search(re.sub(r"\s+", " ", text or ""))


def ruled_out(text: str, cause) -> str:
    """Why the report rules `cause` out ('' when it does not): a static cause, known less than proven, when the
    report says a smaller step works."""
    if cause.id not in STATIC_CAUSES or cause.strength == "proven":
        return ""
    m = smaller_works(text)
    if m:
        return (f"the report says '{m.group(0).strip()}': the run fits at a smaller length or batch, so what does not "
                f"grow with them fits too")
    m = some_data_fails(text)
    return (f"the report says '{m.group(0).strip()}': every other batch fit, so what does not grow with the input "
            f"fits too") if m else ""
