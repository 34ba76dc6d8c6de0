r"""Record formats: which shape a record has, and what it becomes before tokenizing.

    record fields --(data.columns renames)--> detect_format --> Plain([(text, is_target)])   text, alpaca without a
                                                                                             template, prompt-completion
                                                             \-> Chat(messages, tools, target turns)   everything else

Formats, detected per record (a file may mix them):
  messages           OpenAI style: {"messages": [{role, content, tool_calls?, tool_call_id?, reasoning_content?}],
                     "tools"?: [...]}; roles system/developer/user/assistant/tool.
  sharegpt           {"conversations": [{"from": "human"|"gpt"|"system"|"function_call"|"observation", "value"}],
                     "system"?, "tools"?}; a turn with "weight": 0 is shown, not trained.
  prompt_completion  {"prompt", "completion"}: both text, or both (or either) lists of messages; only the completion
                     is trained.
  alpaca             {"instruction", "input"?, "output", "system"?}: a user/assistant chat when the tokenizer has a
                     chat template, else the documented ALPACA_PROMPT.
  text               {text_field}: every token is trained.
A record that fits none raises RecordError naming its file and line; the loader drops it and reports it.
Plain Python: no torch, no tokenizer.
"""

import json
from dataclasses import dataclass, field

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
FORMATS = ("text", "alpaca", "messages", "sharegpt", "prompt_completion")
ROLES = ("system", "developer", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "function_response": "tool", "tool": "tool"}


class RecordError(ValueError):
    """One record cannot be used; the message names the record (file and line) and the reason."""


@dataclass
class Plain:
    segments: list  # [(text, is_target)]


@dataclass
class Chat:
    messages: list                      # normalized OpenAI-style messages
    tools: list | None = None           # tool schemas for the template's system block
    targets: set | None = None          # indices of the assistant messages that take loss; None: all of them
    alpaca: bool = False                # came from an alpaca record (for the summary only)
    extra: dict = field(default_factory=dict)


def rename_columns(fields: dict, columns: dict) -> dict:
    """data.columns maps qlorafit's names to the dataset's: {"messages": "dialog"} reads 'dialog' as 'messages'."""
    if not columns:
        return fields
    out = dict(fields)
    for ours, theirs in columns.items():
        if theirs in fields:
            out[ours] = fields[theirs]
    return out


def detect_format(fields: dict, text_field: str, where: str) -> str:
    """The format of one record, from its field names (and, for 'conversations', the keys of its turns)."""
    if "messages" in fields:
        return "messages"
    conv = fields.get("conversations")
    if isinstance(conv, list) and conv and isinstance(conv[0], dict):
        return "sharegpt" if "from" in conv[0] else "messages"
    if "prompt" in fields and "completion" in fields:
        return "prompt_completion"
    if "instruction" in fields and "output" in fields:
        return "alpaca"
    if text_field in fields:
        return "text"
    raise RecordError(f"{where}: cannot tell the format from the fields ({', '.join(map(str, fields)) or 'none'}); "
                      f"expected 'messages', 'conversations', 'prompt'+'completion', 'instruction'+'output' or "
                      f"'{text_field}' (or set data.format, data.text_field, or map your columns with data.columns)")


def to_example(fields: dict, fmt: str, text_field: str, where: str, has_template: bool) -> Plain | Chat:
    """The record as Plain segments or a Chat, per its format."""
    if fmt == "text":
        return Plain([(_text(fields, text_field, fmt, where), True)])
    if fmt == "alpaca":
        return _alpaca(fields, where, has_template)
    if fmt == "prompt_completion":
        return _prompt_completion(fields, where)
    if fmt == "sharegpt":
        return _sharegpt(fields, where)
    if fmt == "messages":
        msgs = fields.get("messages", fields.get("conversations"))
        return Chat(normalize_messages(_json_list(msgs, "messages", where), where), _tools(fields, where))
    raise RecordError(f"{where}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


# ---- the formats ---------------------------------------------------------------------------------------------------

NEEDS = {"text": "{text_field}", "alpaca": "instruction, output", "prompt_completion": "prompt, completion"}


def _text(fields: dict, name: str, fmt: str, where: str, required: bool = True) -> str:
    if name not in fields or fields[name] is None:
        if not required:
            return ""
        have = ", ".join(map(str, fields)) or "none"
        raise RecordError(f"{where}: no '{name}' field (format {fmt} needs {NEEDS[fmt].format(text_field=name)}; "
                          f"this record has {have})")
    v = fields[name]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise RecordError(f"{where}: field '{name}' should be text, got {type(v).__name__}")
    return v


def _alpaca(fields: dict, where: str, has_template: bool) -> Plain | Chat:
    instruction = _text(fields, "instruction", "alpaca", where)
    inp = _text(fields, "input", "alpaca", where, required=False)
    output = _text(fields, "output", "alpaca", where)
    if not has_template:
        prompt = (ALPACA_PROMPT_INPUT if inp.strip() else ALPACA_PROMPT).format(instruction=instruction, input=inp)
        return Plain([(prompt, False), (output, True)])
    system = _text(fields, "system", "alpaca", where, required=False)
    msgs = [{"role": "system", "content": system}] if system.strip() else []
    msgs += [{"role": "user", "content": instruction + (f"\n\n{inp}" if inp.strip() else "")},
             {"role": "assistant", "content": output}]
    return Chat(msgs, alpaca=True)


def _prompt_completion(fields: dict, where: str) -> Plain | Chat:
    p, c = fields.get("prompt"), fields.get("completion")
    if isinstance(p, str) and isinstance(c, str):
        return Plain([(p, False), (c, True)])
    if p is None or c is None:
        return Plain([(_text(fields, "prompt", "prompt_completion", where),  # raises naming the missing one
                       False), (_text(fields, "completion", "prompt_completion", where), True)])
    prompt = [{"role": "user", "content": p}] if isinstance(p, str) else _json_list(p, "prompt", where)
    completion = [{"role": "assistant", "content": c}] if isinstance(c, str) else _json_list(c, "completion", where)
    msgs = normalize_messages(prompt + completion, where)
    targets = {i for i in range(len(prompt), len(msgs)) if msgs[i]["role"] == "assistant"}
    if not targets:
        raise RecordError(f"{where}: 'completion' holds no assistant message: nothing to train on")
    return Chat(msgs, _tools(fields, where), targets)


def _sharegpt(fields: dict, where: str) -> Chat:
    turns = _json_list(fields.get("conversations"), "conversations", where)
    msgs, skip = [], set()
    system = fields.get("system")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": system})
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise RecordError(f"{where}: conversations[{i}] should have 'from' and 'value'")
        who = str(t["from"]).lower()
        if who not in SHAREGPT_ROLES:
            raise RecordError(f"{where}: conversations[{i}]: unknown speaker 'from': {t['from']!r} (known: "
                              f"{', '.join(SHAREGPT_ROLES)})")
        role, value = SHAREGPT_ROLES[who], t["value"]
        if who == "function_call":
            calls = _parse_json(value, f"conversations[{i}].value", where)
            msgs.append({"role": "assistant", "content": "", "tool_calls": calls if isinstance(calls, list) else [calls]})
        else:
            msgs.append({"role": role, "content": value})
        if role == "assistant" and t.get("weight") == 0:
            skip.add(len(msgs) - 1)
    msgs = normalize_messages(msgs, where, field_name="conversations")
    targets = {i for i, m in enumerate(msgs) if m["role"] == "assistant" and i not in skip} if skip else None
    return Chat(msgs, _tools(fields, where), targets)


# ---- messages --------------------------------------------------------------------------------------------------------

def normalize_messages(msgs: list, where: str, field_name: str = "messages") -> list[dict]:
    """OpenAI-style messages as chat templates expect them: text content (text parts joined), tool_calls as
    [{"type": "function", "function": {"name", "arguments": dict}}], tool results as text. Anything a template could
    not show (an image part, a tool call without a name) is a RecordError, never dropped."""
    if not msgs:
        raise RecordError(f"{where}: field '{field_name}' is an empty list")
    out = []
    for i, m in enumerate(msgs):
        at = f"{where}: {field_name}[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RecordError(f"{at} should have a text 'role' and a 'content'")
        role = "tool" if m["role"] == "function" else m["role"]
        if role not in ROLES:
            raise RecordError(f"{at}: unknown role {m['role']!r} (known: {', '.join(ROLES)})")
        msg = {k: v for k, v in m.items() if v is not None and k not in ("role", "content", "tool_calls",
                                                                           "function_call")}
        msg["role"] = role
        msg["content"] = _content(m.get("content"), at, role)
        calls = m.get("tool_calls") or ([m["function_call"]] if m.get("function_call") else None)
        if calls:
            if role != "assistant":
                raise RecordError(f"{at}: only assistant messages can carry tool_calls (this one is {role})")
            msg["tool_calls"] = [_tool_call(c, f"{at}.tool_calls[{k}]") for k, c in enumerate(_as_list(calls, at))]
        elif m.get("content") is None and role != "assistant":
            raise RecordError(f"{at} should have a text 'role' and a text 'content'")
        out.append(msg)
    if not any(m["role"] == "assistant" for m in out):
        raise RecordError(f"{where}: no assistant message in '{field_name}': nothing to train on")
    return out


def _content(c, at: str, role: str) -> str:
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # content parts: [{"type": "text", "text": ...}]
        texts = []
        for k, part in enumerate(c):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RecordError(f"{at}.content[{k}]: a {kind!r} part; qlorafit trains text-only models, so only "
                                  f"text parts can be used")
        return "".join(texts)
    if isinstance(c, dict) and role == "tool":
        return json.dumps(c, ensure_ascii=False)
    raise RecordError(f"{at}: 'content' should be text, got {type(c).__name__}")


def _tool_call(c, at: str) -> dict:
    if not isinstance(c, dict):
        raise RecordError(f"{at}: a tool call should be an object, got {type(c).__name__}")
    fn = c.get("function") if isinstance(c.get("function"), dict) else c  # OpenAI nests it; ShareGPT does not
    name, args = fn.get("name"), fn.get("arguments", fn.get("parameters", {}))
    if not isinstance(name, str) or not name:
        raise RecordError(f"{at}: a tool call needs a function name")
    if isinstance(args, str):
        args = _parse_json(args, "arguments", at) if args.strip() else {}
    if not isinstance(args, dict):
        raise RecordError(f"{at}: 'arguments' should be a JSON object, got {type(args).__name__}")
    out = {"type": "function", "function": {"name": name, "arguments": args}}
    if c.get("id") is not None:
        out["id"] = c["id"]
    return out


def _tools(fields: dict, where: str) -> list | None:
    tools = fields.get("tools")
    if tools in (None, "", []):
        return None
    tools = _parse_json(tools, "tools", where) if isinstance(tools, str) else tools
    if not isinstance(tools, list):
        raise RecordError(f"{where}: 'tools' should be a list of tool schemas")
    return [t if "function" in t or "type" in t else {"type": "function", "function": t} for t in tools]


def _json_list(v, name: str, where: str) -> list:
    if isinstance(v, str):  # CSV and parquet cells often hold JSON text
        v = _parse_json(v, name, where)
    if not isinstance(v, list) or not v:
        raise RecordError(f"{where}: field '{name}' should be a non-empty list of messages")
    return v


def _parse_json(v, name: str, where: str):
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except json.JSONDecodeError as e:
        raise RecordError(f"{where}: field '{name}' is text but not JSON ({e.msg} at column {e.colno})") from None


def _as_list(v, at: str) -> list:
    if isinstance(v, dict):
        return [v]
    if not isinstance(v, list):
        raise RecordError(f"{at}: tool_calls should be a list")
    return v
