"""Real chat templates (tests/fixtures/chat_templates, sources in SOURCES.md) on an offline tokenizer: the demo BPE
with each family's control tokens added as special tokens, and the family's bos/eos."""

import copy
from functools import lru_cache
from pathlib import Path

TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>", "<|eom_id|>", "<|python_tag|>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>",
            "<|user|>", "<|end|>", "<|endoftext|>", "<|im_sep|>", "[INST]", "[/INST]", "[TOOL_CALLS]",
            "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "<|start|>", "<|message|>",
            "<|channel|>", "<|return|>", "<|call|>", "<|constrain|>", "<｜User｜>", "<｜Assistant｜>",
            "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
            "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>",
            "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<think>", "</think>",
            "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<|startoftext|>",
            "<|tool_list_start|>", "<|tool_list_end|>", "<|tool_response_start|>", "<|tool_response_end|>"]
# template file -> (bos, eos) as the family's tokenizer has them
FAMILIES = {"llama3_1": ("<|begin_of_text|>", "<|eot_id|>"), "llama3_2": ("<|begin_of_text|>", "<|eot_id|>"),
            "qwen2_5": (None, "<|im_end|>"), "qwen3": (None, "<|im_end|>"), "qwen3_training": (None, "<|im_end|>"),
            "gemma3": ("<bos>", "<eos>"), "phi3": ("<s>", "<|endoftext|>"), "phi3_5": ("<s>", "<|endoftext|>"),
            "phi4": (None, "<|im_end|>"), "mistral_nemo": ("<s>", "</s>"), "gptoss": (None, "<|return|>"),
            "deepseekv3": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"), "lfm2": ("<|startoftext|>", "<|im_end|>")}


@lru_cache(maxsize=1)
def _base():
    from qlorafit.demo_assets import demo_tokenizer
    t = demo_tokenizer()
    t.add_special_tokens({"additional_special_tokens": SPECIALS})
    return t


def family_tokenizer(name: str):
    t = copy.deepcopy(_base())
    bos, eos = FAMILIES[name]
    t.bos_token, t.eos_token = bos, eos
    t.chat_template = (TEMPLATES / f"{name}.jinja").read_text()
    return t


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def tool_chat(i: int = 0) -> list[dict]:
    """system, user, assistant, user, assistant calling a tool (no text), tool result, assistant."""
    city = ["Lima", "Quito", "Bogota", "La Paz"][i % 4]
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Capital of case {i}?"},
            {"role": "assistant", "content": f"{city}."}, {"role": "user", "content": "Weather there?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call{i:05d}", "type": "function",
                 "function": {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'}}]},
            {"role": "tool", "tool_call_id": f"call{i:05d}", "content": "22 C, sunny"},
            {"role": "assistant", "content": f"Sunny in {city}, 22 C."}]


def as_sharegpt(msgs: list[dict]) -> list[dict]:
    """The same conversation as ShareGPT turns (function_call / observation, as LLaMA-Factory writes them)."""
    import json
    who = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
    out = []
    for m in msgs:
        if m.get("tool_calls"):
            f = m["tool_calls"][0]["function"]
            out.append({"from": "function_call", "value": json.dumps({"name": f["name"],
                                                                       "arguments": json.loads(f["arguments"])})})
        else:
            out.append({"from": who[m["role"]], "value": m["content"]})
    return out


def target_spans(tok, ids: list[int], mask: list[bool]) -> list[str]:
    """The decoded runs of masked tokens, in order."""
    spans, cur = [], []
    for i, m in zip(ids, mask):
        if m:
            cur.append(i)
        elif cur:
            spans.append(tok.decode(cur))
            cur = []
    if cur:
        spans.append(tok.decode(cur))
    return spans
