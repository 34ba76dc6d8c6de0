"""Assistant-only masks on any chat template: which tokens of a rendered conversation are the assistant's.

A turn's target is what the model generates after the generation prompt: its text (thinking, tool calls) and its
end-of-turn token, not the newline some templates write after that token, and never the header ('<|im_start|>
assistant\\n') the generation prompt already holds.

Three ways, the first that applies wins:
  1. the template marks assistant output with {% generation %}: transformers' return_assistant_tokens_mask;
  2. the template is prefix-stable (rendering more turns only appends text): each turn is the text between
     "history + generation prompt" and "history + this turn", read straight off the full render;
  3. otherwise (Qwen3 drops old thinking blocks, gpt-oss ends the last turn with <|return|> and others with <|end|>,
     Phi-3 closes with eos, Mistral moves the system prompt, DeepSeek-V3's generation prompt opens a <think>): the
     conversation is rendered once, and each turn is located in it. The turn starts after the first occurrence of
     the history's last tokens (from the end of the previous turn) and as much of the generation prompt as the
     template wrote there; it ends at its end-of-turn token, counted as often as the turn rendered alone holds it.
A template that would drop a tool call (the render is the same without it) is refused for that record, never
trained as an empty turn. Nothing here imports torch.
"""

import re
from dataclasses import dataclass

from qlorafit.errors import first_line
from qlorafit.runtime.formats import Chat, RecordError

GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
ANCHOR_TOKENS = 16  # history tokens that anchor a turn in the full render


@dataclass
class ChatTemplate:
    tokenizer: object
    template: str
    kwargs: dict     # data.chat_template_kwargs: enable_thinking, reasoning_effort, ...

    def render(self, messages: list, tools, gen: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen,
                                                  chat_template=self.template, **self.kwargs)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]  # the template writes its own bos


def encode_chat(ct: ChatTemplate, chat: Chat, where: str, masks: bool = True) -> tuple[list[int], list[bool]]:
    """Token ids of the whole conversation, and per token whether it takes loss (a target assistant turn). masks
    False (data.completion_only off): every token takes loss, no turn is located."""
    messages = _render_ready(ct, chat, where)
    try:
        full = ct.render(messages, chat.tools, gen=False)
    except Exception as e:  # jinja's TemplateError, raise_exception(), TypeError from string concatenation ...
        raise RecordError(f"{where}: the chat template cannot render this conversation: {first_line(e)}") from None
    _check_tool_calls(ct, messages, chat.tools, full, where)
    if not masks:
        ids = ct.ids(full)
        return ids, [True] * len(ids)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    wanted = set(turns) if chat.targets is None else chat.targets
    if GENERATION_TAG.search(ct.template):
        got = _generation_masks(ct, messages, chat.tools, turns, wanted)
        if got is not None:
            return got
    ids = ct.ids(full)
    mask = [False] * len(ids)
    lo = 0
    for a in turns:
        turn = _turn_alone(ct, messages, chat.tools, a)
        span = _locate(turn, ids, lo) if turn[1] < len(turn[0]) else None
        if span is None:
            raise RecordError(f"{where}: cannot locate assistant message {a} in the rendered conversation (the chat "
                              f"template rewrites it beyond recognition); set data.completion_only: false")
        if a in wanted:
            mask[span[0]:span[1]] = [True] * (span[1] - span[0])
        lo = span[1]
    return ids, mask


def _render_ready(ct: ChatTemplate, chat: Chat, where: str) -> list:
    """DeepSeek-style templates concatenate arguments as text; the rest want a dict (transformers' convention)."""
    msgs = chat.messages
    if not any("tool_calls" in m for m in msgs):
        return msgs
    try:
        ct.render(msgs, chat.tools, gen=False)
        return msgs
    except TypeError:
        import json
        return [{**m, "tool_calls": [{**c, "function": {**c["function"], "arguments": json.dumps(
            c["function"]["arguments"], ensure_ascii=False)}} for c in m["tool_calls"]]} if "tool_calls" in m else m
                for m in msgs]
    except Exception:
        return msgs  # the caller renders again and reports the template's own error


def _check_tool_calls(ct: ChatTemplate, messages: list, tools, full: str, where: str) -> None:
    """A template that ignores tool_calls would train a tool-calling turn as an empty one: refuse it, loudly. Caught
    both ways: the call's name is nowhere in the render, or the render is the same without the calls (a template
    such as LFM2's shows the tools list, so the names do appear, but never the calls)."""
    for i, m in enumerate(messages):
        calls = m.get("tool_calls")
        if not calls:
            continue
        lost = all(c["function"]["name"] not in full for c in calls)
        if not lost:
            without = messages[:i] + [{k: v for k, v in m.items() if k != "tool_calls"}] + messages[i + 1:]
            lost = _try_render(ct, without, tools, False) == full  # None (the template needs them) is not lost
        if lost:
            raise RecordError(f"{where}: messages[{i}] calls tool '{calls[0]['function']['name']}', but the chat "
                              f"template does not render tool_calls, so the call would be lost; use a model whose "
                              f"template supports tools, or set data.chat_template")


def _generation_masks(ct, messages, tools, turns, wanted):
    """Way 1: the template's own {% generation %} spans, one per assistant message; None if they do not pair up."""
    try:
        out = ct.tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                               return_assistant_tokens_mask=True, chat_template=ct.template,
                                               **ct.kwargs)
    except (ValueError, NotImplementedError):  # a slow tokenizer has no offsets: locate the turns instead
        return None
    ids, flags = list(out["input_ids"]), [bool(f) for f in out["assistant_masks"]]
    runs, k = [], 0
    while k < len(flags):
        if flags[k]:
            e = k
            while e < len(flags) and flags[e]:
                e += 1
            runs.append([k, e])
            k = e
        else:
            k += 1
    if len(runs) != len(turns):
        return None
    mask = [False] * len(ids)
    for a, (s, e) in zip(turns, runs):
        while e > s and _blank(ct, ids[e - 1]):
            e -= 1  # the newline after the end-of-turn token is template glue, not generated
        if a in wanted:
            mask[s:e] = [True] * (e - s)
    return ids, mask


def _turn_alone(ct: ChatTemplate, messages: list, tools, a: int) -> tuple[list[int], int, list, list, int]:
    """Turn a rendered as the end of its conversation.

    Returns (x, start, tail, header, stop): x is "history + turn" up to the turn's end-of-turn token; the turn's
    target is x[start:]. tail is the last tokens of the history before the generation prompt, header the generation
    prompt ('<|im_start|>assistant\\n', '<|start|>assistant', ...): together they anchor the turn in the full render.
    stop is the turn's last token when it is the conversation's last (gpt-oss: <|return|>, where x ends with <|end|>).
    """
    before, upto = messages[:a], messages[: a + 1]
    tail, header = [], []
    if before:
        prompt = ct.ids(_try_render(ct, before, tools, True) or "")
        plain = ct.ids(_try_render(ct, before, tools, False) or "")
        k = _lcp(prompt, plain)
        tail, header = prompt[:k][-ANCHOR_TOKENS:], prompt[k:]
    final = ct.ids(ct.render(upto, tools, gen=False))
    _strip_blank(ct, final)
    x = ct.ids(_try_render(ct, upto, tools, True) or "")
    if header and x[-len(header):] == header:
        x = x[: -len(header)]  # as a history turn: where the template would open the next generation prompt
        _strip_blank(ct, x)
        if a == len(messages) - 1 and final[:len(x)] != x:
            x = list(final)  # the last turn as the full render has it (gpt-oss keeps its thinking, ends <|return|>)
    else:
        x = list(final)
    return x, _anchor(x, 0, tail, header), tail, header, (final[-1] if final else None)


def _strip_blank(ct: ChatTemplate, ids: list) -> None:
    while ids and _blank(ct, ids[-1]):
        ids.pop()  # the newline after the end-of-turn token is template glue, not generated


def _anchor(seq: list, lo: int, tail: list, header: list) -> int:
    """Where a turn's generated text starts in seq (from lo): after the first occurrence of the history's last
    tokens (the longest that occurs), then after as much of the generation prompt as the template wrote there."""
    pos = lo
    for m in range(len(tail), 0, -1):
        j = _find(seq, tail[-m:], lo)
        if j >= 0:
            pos = j + m
            break
    k = 0
    while k < len(header) and pos + k < len(seq) and seq[pos + k] == header[k]:
        k += 1
    return pos + k


def _locate(turn, ids: list, lo: int) -> tuple[int, int] | None:
    """[start, end) of a turn in the full render, searching from lo: anchored like the turn alone, ending at the
    same count of its end-of-turn token (or the conversation's own last token, for the last turn)."""
    x, start, tail, header, stop = turn
    n = len(x)
    if ids[:n] == x:  # prefix-stable: the turn sits exactly where it does on its own
        return start, n
    s = _anchor(ids, lo, tail, header)
    eot = x[-1]
    need, seen = x[start:].count(eot), 0
    for j in range(s, len(ids)):
        if ids[j] == eot or ids[j] == stop:
            seen += 1
            if seen == need or ids[j] != eot:
                return s, j + 1
    return None


def _find(seq: list, sub: list, lo: int) -> int:
    first, m = sub[0], len(sub)
    for j in range(lo, len(seq) - m + 1):
        if seq[j] == first and seq[j: j + m] == sub:
            return j
    return -1


def _try_render(ct: ChatTemplate, messages: list, tools, gen: bool) -> str | None:
    try:
        return ct.render(messages, tools, gen)
    except Exception:  # e.g. Gemma's alternation check on a history ending with an assistant turn
        return None


def _blank(ct: ChatTemplate, token_id: int) -> bool:
    return not ct.tokenizer.decode([token_id]).strip()


def _lcp(a: list, b: list) -> int:
    n, m = 0, min(len(a), len(b))
    while n < m and a[n] == b[n]:
        n += 1
    return n
