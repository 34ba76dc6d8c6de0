"""Upload a run's LoRA adapter to the Hugging Face Hub, with a model card that records the base model, the data, the
configuration, and the memory and speed the run measured.

  qlorafit push runs/my-run --repo me/llama-3.1-8b-support-lora
  qlorafit push runs/my-run --repo me/my-adapter --private --checkpoint checkpoints/step-400

Uses your Hub login (`hf auth login` or HF_TOKEN) and HF_ENDPOINT. The same happens at the end of `qlorafit train`
when the config sets train.push_to_hub: ID.
"""

import shutil
import tempfile
from pathlib import Path

import yaml

from qlorafit.errors import UserError, first_line

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def add_arguments(p) -> None:
    p.add_argument("run", help="the run directory (the output_dir of `qlorafit train`)")
    p.add_argument("--repo", required=True, help="Hub repo to create or update, as owner/name")
    p.add_argument("--checkpoint", default="final",
                   help="which adapter of the run, relative to it (default %(default)s; e.g. checkpoints/step-400)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    p.add_argument("--message", default=None, help="commit message (default: 'qlorafit: adapter from RUN')")


def run(a) -> int:
    url = push_run(Path(a.run), a.repo, a.checkpoint, a.private, a.message)
    print(f"pushed {Path(a.run) / a.checkpoint} to {a.repo}: {url}")
    return 0


def push_run(run_dir: Path, repo_id: str, checkpoint: str = "final", private: bool = False,
             message: str | None = None) -> str:
    """Stage the adapter files and README.md in a temp folder, then upload them in one commit."""
    from qlorafit import hub

    adapter = run_dir / checkpoint
    missing = [f for f in ADAPTER_FILES if not (adapter / f).is_file()]
    if missing:
        raise UserError(f"push: {adapter} holds no complete adapter (missing {', '.join(missing)}); give a run "
                        f"directory whose training finished, or --checkpoint checkpoints/step-N")
    if repo_id.count("/") != 1:
        raise UserError(f"push: --repo must be owner/name, got '{repo_id}'")
    with tempfile.TemporaryDirectory(prefix="qlorafit-push-") as tmp:
        for f in ADAPTER_FILES:
            shutil.copy2(adapter / f, Path(tmp) / f)
        (Path(tmp) / "README.md").write_text(model_card(run_dir, repo_id, checkpoint))
        return hub.push_folder(Path(tmp), repo_id, private, message or f"qlorafit: adapter from {run_dir.name}")


def model_card(run_dir: Path, repo_id: str, checkpoint: str = "final") -> str:
    """README.md for the adapter: Hub metadata (base_model, library, tags), then what the run used and measured."""
    from qlorafit import report
    from qlorafit.core.catalog import hub_id_of
    from qlorafit.core.sizes import fmt_gib

    cfg = _read_yaml(run_dir / "config.yaml")
    model, data = cfg.get("model", {}), cfg.get("data", {})
    base = str(model.get("name_or_path", "unknown"))
    base_id = hub_id_of(base) or base
    meta = {"library_name": "peft", "tags": ["qlorafit", "lora", "qlora"], "pipeline_tag": "text-generation"}
    on_hub = base_id.count("/") == 1 and not base_id.startswith((".", "/", "~"))
    if on_hub:
        meta["base_model"] = base_id
    try:
        run = report.load_run(run_dir)
        rows, peak = report.summary(run), (run.estimate or {}).get("peak_bytes")
    except UserError as e:
        rows, peak = [("measurements", f"not available ({e})")], None
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {repo_id.split('/')[-1]}", "",
             f"A LoRA adapter for {f'[{base_id}](https://huggingface.co/{base_id})' if on_hub else f'`{base_id}`'}, "
             f"trained with qlorafit (4-bit {model.get('quant', 'nf4')} base + LoRA).", "",
             "## Use it", "", "```python", "from peft import AutoPeftModelForCausalLM", "",
             f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")', "```", "",
             "## Training", "",
             f"- base model: `{base}`",
             f"- data: `{data.get('path', 'unknown')}` (format {data.get('format', 'auto')}, max_seq_length "
             f"{data.get('max_seq_length', '?')}, packing {data.get('packing', False)})",
             f"- adapter: `{checkpoint}` of run `{run_dir.name}`", "",
             "## Measured on the training run", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Configuration", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False).strip(), "```", ""]
    if peak:
        lines.insert(lines.index("## Configuration"), f"qlorafit's estimate before the run: {fmt_gib(peak)} peak GPU "
                                                      f"memory.\n")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"push: {path.parent} has no config.yaml: not a qlorafit run directory")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({first_line(e)})") from None
    return cfg if isinstance(cfg, dict) else {}
