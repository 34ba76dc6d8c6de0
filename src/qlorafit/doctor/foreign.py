"""Settings as people post them: another trainer's YAML (LLaMA-Factory, axolotl), an accelerate config, a DeepSpeed
JSON, a command line of --flags, `key: value` lines in a message, or a script. All of it is read, never run.

The result is a flat dict of HF-style names (qlorafit.doctor.settings.normalize folds other trainers' names onto
them) plus the launch: `world_size`, `zero_stage`, `offload_param`, `offload_optimizer`, `fsdp`, `zero3_init`.

    read_settings("--cutoff_len 4096 --per_device_train_batch_size 2")  # {'cutoff_len': 4096, ...}
"""

import json
import re
import textwrap

import yaml

from qlorafit.doctor.ruled_out import sentence_around
from qlorafit.doctor.settings import KNOWN_KEYS, normalize

_NULL_WORDS = frozenset(("none", "null", "~"))
"""How YAML, JSON and command lines spell 'no value' (DeepSpeed's offload device 'none' means no offload)."""

_LAUNCH = (  # a launcher and the flag that says how many processes it starts
    r"(?:torchrun|torch\.distributed\.(?:run|launch))[^\n]*?--nproc[_-]per[_-]node[= ]+(\d+)",
    r"accelerate launch[^\n]*?--num[_-]processes[= ]+(\d+)",
    r"deepspeed\s[^\n]*?--num[_-]gpus[= ]+(\d+)",
    r"NPROC_PER_NODE=(\d+)",
    r"FORCE_TORCHRUN=(\d+)",
)


def _value(v):
    """'true' -> True, '4' -> 4, '2e-4' -> 0.0002, quoted strings unquoted; anything else as text."""
    if not isinstance(v, str):
        return v
    s = v.strip().strip(",").strip("\"'`")  # '`--batch-size 1`': markdown's inline code around a posted flag
    low = s.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in _NULL_WORDS:
        return None
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def _flatten(d: dict, out: dict) -> None:
    """Nested configs (accelerate's deepspeed_config, DeepSpeed's zero_optimization) into flat keys."""
    for k, v in d.items():
        key = str(k).replace("-", "_")
        if key == "zero_optimization" and isinstance(v, dict):
            out["zero_stage"] = _value(v.get("stage"))
            for part in ("offload_optimizer", "offload_param"):
                dev = v.get(part, {}).get("device") if isinstance(v.get(part), dict) else None
                out[part] = dev is not None and str(dev).lower() not in _NULL_WORDS
        elif key in ("offload_optimizer_device", "offload_param_device"):
            out[key.replace("_device", "")] = str(v).lower() not in _NULL_WORDS
        elif key in ("deepspeed_config", "fsdp_config") and isinstance(v, dict):
            _flatten(v, out)
            if key == "fsdp_config":
                out["fsdp"] = True
        elif key in ("bf16", "fp16") and isinstance(v, dict):  # DeepSpeed: "bf16": {"enabled": true | "auto"}
            out[key] = _value(v.get("enabled")) if isinstance(v.get("enabled"), str) else v.get("enabled")
        elif key == "deepspeed" and isinstance(v, dict):
            _flatten(v, out)
        elif isinstance(v, dict):
            _flatten(v, out)
        else:
            out[key] = _value(v) if isinstance(v, str) else v


_STAGE_HEARSAY = re.compile(r"\bmention\w*|\bheard\b|\baccording to\b|\b(?:previous|other|some) (?:issues|posts|threads)\b",
                            re.I)
"""A ZeRO stage named as hearsay or a failure of its own ('previous issues mentioned zero3 doesn't work well with
PPO'): not the setup the report runs."""


def _launch(text: str) -> dict:
    out = {}
    for pat in _LAUNCH:
        m = re.search(pat, text)
        if m:
            out["world_size"] = int(m.group(1))
            break
    if re.search(r"\bdeepspeed\s+(?:--\S+\s+)*\S+\.py", text) and "world_size" not in out:
        out["world_size"] = "several"  # deepspeed's launcher takes every visible GPU
    m = next((m for pat in (r"ds_z(\d)(?!\d)", r"zero[_-]?(?:stage[_ ]?)?([0-3])\b", r"zero\W{0,3}(?:\(|\s)*stage[\s_-]*([0-3])\b")
              for m in re.finditer(pat, text, re.I) if not _STAGE_HEARSAY.search(sentence_around(text, m))), None)
    if m:
        out["zero_stage"] = int(m.group(1))
        if re.search(r"ds_z\d_offload|zero\d?_?(?:bf16_)?(?:cpu)?offload|offload", text, re.I):
            out["offload_param"] = True
    return out


def launch_facts(text: str) -> dict:
    """What a launch command says (torchrun --nproc_per_node, accelerate --num_processes, deepspeed --num_gpus, a
    DeepSpeed config's name): world_size, zero_stage, offload_param."""
    return _launch(text)


def named_config_facts(path: str) -> dict:
    """What a DeepSpeed config's file name says when only the name is given ('deepspeed="ds_z3.json"',
    'ds_z3_offload_config.json', 'zero2.json'): the ZeRO stage and offload, by the names the trainers' examples use."""
    return {k: v for k, v in _launch(path).items() if k != "world_size"}


def _mapping(text: str) -> dict | None:
    """A YAML or JSON mapping, if the text is one."""
    for load in (json.loads, yaml.safe_load):
        try:
            d = load(text)
        except (ValueError, yaml.YAMLError):
            continue
        if isinstance(d, dict):
            return d
    return None


def _flags(text: str) -> dict:
    """--key value / --key=value / --flag (true), and `key: value` / `key=value` lines, for the keys we know."""
    out = {}
    # a shell operator after a bare flag is not its value: '--bf16 > train.log 2>&1 &' sets bf16
    for m in re.finditer(r"--([A-Za-z][\w.-]*)(?:[ =]+(?!--)(?![<>|&;]|\d?>)(\"[^\"]*\"|'[^']*'|[^\s\\]+))?", text):
        key = m.group(1).replace("-", "_")
        key = key.rsplit(".", 1)[-1]  # hydra/verl paths: actor_rollout_ref.rollout.gpu_memory_utilization
        if key in KNOWN_KEYS:
            out[key] = _value(m.group(2)) if m.group(2) is not None else True
    for m in re.finditer(r"(?<![\w.-])([A-Za-z_]\w*(?:\.\w+)+)=([^\s\\]+)", text):  # hydra: a.b.c=v, many a line
        key = m.group(1).rsplit(".", 1)[-1]
        if key in KNOWN_KEYS and key not in out:
            out[key] = _value(m.group(2))
    for m in re.finditer(r"^[\s#>]*([A-Za-z_][\w.]*)\s*[:=]\s*([^\n#,)]+)", text, re.M):
        key = m.group(1).rsplit(".", 1)[-1]
        key = key.lower() if key.isupper() else key  # a module of constants: 'MODEL_PARALLEL = 4'
        if key in KNOWN_KEYS and key not in out:
            out[key] = _value(m.group(2))
    # inside a sentence: 'with max_seq_length=32768 on one A100', 'max_seq_length 16384': a known name written as code
    # (it has an underscore) and a number. Numbers only: a flag in prose is as often denied or asked about
    # ("doesn't pass gradient_checkpointing=True") as stated
    for m in re.finditer(r"(?<![\w.-])([A-Za-z]\w*_\w+)(?:\s?[:=]\s?|\s(?:is|of|was)\s|\s)(\d+(?:\.\d+)?)(?![\w.]*\w)",
                         text):
        key = m.group(1)
        if key in KNOWN_KEYS and key not in out:
            out[key] = _value(m.group(2))
    # the micro-batch in plain words: 'batch size is 16', 'with a batch size of 4' (not the eval batch)
    m = re.search(r"(?<![\w-])(?<!eval )(?:micro[- ]?)?batch[ -]?size\s(?:is\s|of\s|was\s|=\s?|:\s?)?(\d{1,4})"
                  r"(?![\w.]*\w)", text, re.I)
    if m and "per_device_train_batch_size" not in out:
        out["per_device_train_batch_size"] = int(m.group(1))
    return out


def _fairseq(text: str) -> bool:
    """A fairseq training command: fairseq-train, or a train.py given --arch, --task or --criterion, and --max-tokens."""
    return "fairseq-train" in text or all(re.search(p, text) for p in (r"--arch\s", r"--(?:task|criterion)\s",
                                                                       r"--max-tokens\s"))


def _lowered(raw: dict) -> dict:
    """A module of constants names its settings in capitals ('MODEL_PARALLEL = 4'): read them as their names."""
    return {(k.lower() if isinstance(k, str) and k.isupper() else k): v for k, v in raw.items()}


def read_settings(text: str) -> dict:
    """Every setting the text states, whatever its form, folded onto the doctor's names."""
    if not text or not text.strip():
        return {}
    raw: dict = {}
    d = _mapping(textwrap.dedent(text))
    if d is not None:
        _flatten(d, raw)
    if not any(k.rsplit(".", 1)[-1] in KNOWN_KEYS for k in _lowered(raw)):  # not a config: a sentence with a colon
        raw = _flags(text)  # is no mapping
    raw = _lowered(raw)
    raw.update({k: v for k, v in _launch(text).items() if k not in raw})
    if _fairseq(text) and not re.search(r"--(?:memory-efficient-)?(?:fp16|bf16)\b|--amp\b", text):
        raw.setdefault("fp16", False)  # fairseq trains in fp32 unless its command line asks for half precision
    if isinstance(raw.get("deepspeed"), str) and "zero_stage" not in raw:
        raw.update(named_config_facts(raw["deepspeed"]))
    return normalize(raw)


def looks_like_python(text: str) -> bool:
    return bool(re.search(r"^\s*(?:from \w[\w.]* import|import \w|\w+\s*=\s*\w[\w.]*\(|\w+\.from_pretrained\()",
                          text, re.M))


_RANK = r"(?:\[(?:rank|default)\d+\]:)?"
"""The '[rank0]:' that torchrun puts before every line a worker prints."""
_FRAME_LINE = re.compile(r'^' + _RANK + r'\s*(?:\d+\s+)?File "[^"]+", line \d+, in .*$')


def _without_traceback_code(text: str) -> str:
    """The error text without the source line under each traceback frame: '    model = torch.nn.parallel.
    DistributedDataParallel(' is the library's code at that frame, not a setting of the user's."""
    out, skip = [], False
    for line in (text or "").splitlines():
        if skip and line.strip() and not _FRAME_LINE.match(line):
            skip = False
            continue
        skip = bool(_FRAME_LINE.match(line))
        out.append(line)
    return "\n".join(out)


_LIBRARY_FRAME = re.compile(r'^' + _RANK + r'\s*(?:\d+\s+)?File "[^"]*(?:site-packages|dist-packages|[/\\]lib[/\\]python\d[\d.]*[/\\])'
                            r'[^"]*", line \d+, in .*$')


def without_library_code(text: str) -> str:
    """The error text without the source lines a traceback prints under a library's frame (site-packages): they are
    the library's code ('hidden_states.to(torch.float32)' in a model's RMSNorm), not the user's words or settings. The
    user's own frames keep theirs."""
    out, skip = [], False
    for line in (text or "").splitlines():
        if _FRAME_LINE.match(line):
            skip = bool(_LIBRARY_FRAME.match(line))
            out.append(line)
            continue
        body = re.sub(r"^" + _RANK, "", line)
        if skip and body.startswith((" ", "\t")) and body.strip():
            continue  # the library's source line, and the ^^^^ markers under it
        skip = False
        out.append(line)
    return "\n".join(out)


def read_posted(error_text: str, config: str = "", script: str = ""):
    """Inputs for what a user posted: the error text, and the config and/or script they pasted with it.

    Settings stated anywhere are read (the config wins over the error text); a Python script is analysed as a script.
    """
    from qlorafit.doctor.case import Inputs
    from qlorafit.doctor.script import analyse_lenient

    settings = read_settings(_without_traceback_code(error_text))
    whole = bool(config and config.strip() and not looks_like_python(config))
    if whole:
        from_config = read_settings(config)
        settings.update(from_config)
        if not from_config and not re.search(r"^\s*[\w.\-]+\s*[:=]", config, re.M):
            # nothing in it reads as key: value (a config described in words, 'the vLLM compose with max-model-len
            # 180K'): it is more of the report, read as words, and no whole config
            error_text, whole = f"{error_text}\n{config}", False
    info = None
    for text in (script, config if looks_like_python(config) else ""):
        if text and text.strip():
            info = analyse_lenient(text)
    return Inputs(error_text=error_text, settings=settings, script=info, partial_settings=not whole)
