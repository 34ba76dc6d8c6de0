"""Experiment trackers (train.report_to): the metrics and events of metrics.jsonl / events.jsonl, through each
library's own API. Every tracker receives the same flat scalars:

    train/<key>    each metrics.jsonl row (loss, lr, grad_norm, tokens_per_s, ...), at its step
    memory/<key>   its memory figures (mem_allocated, mem_peak_reserved, host_rss, ...)
    eval/<key>     each evaluation (loss, perplexity, token_accuracy)
    events/<kind>/count  running count of each event kind (oom_recovery, skip_sample, leak_warning, nan_loss, early_stop,
                   ...), with its numeric fields as events/<kind>/<field> (old/new micro-batch, bytes, ...)

Each tracker is configured by its own environment (WANDB_PROJECT / WANDB_MODE, MLFLOW_TRACKING_URI /
MLFLOW_EXPERIMENT_NAME, TRACKIO_PROJECT / TRACKIO_DIR); qlorafit passes the run name and the resolved config.
"""

import importlib
import os
from pathlib import Path

from qlorafit.core.config import TrainConfig
from qlorafit.errors import UserError

SKIP_EVENTS = ("data", "checkpoint", "eval")  # data is a summary, checkpoints are not a measurement, eval has eval/
MODULES = {"tensorboard": "torch.utils.tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


def names(t: TrainConfig) -> list[str]:
    """train.report_to, each once, with tensorboard added by train.tensorboard (the older switch for it)."""
    return list(dict.fromkeys(t.report_to + ["tensorboard"] * t.tensorboard))


def _need(name: str, where: str = "train.report_to"):
    """The tracker's module (each tracker is the pip extra of its own name), or a one-line error naming the install."""
    try:
        return importlib.import_module(MODULES[name])
    except ImportError:
        undo = f"drop {name} from {where}" if where == "train.report_to" else f"set {where} to false"
        raise UserError(f"{where}: {name} needs the {name} package: pip install 'qlorafit[{name}]' (or {undo})") \
            from None


# Each backend starts its run and returns (log(scalars, step), close()).

def _tensorboard(run_dir: Path, name: str, config: dict):
    w = _need("tensorboard").SummaryWriter(str(run_dir / "tensorboard"))
    return (lambda scalars, step: [w.add_scalar(k, v, step) for k, v in scalars.items()]), w.close


def _wandb(run_dir: Path, name: str, config: dict):
    run = _need("wandb").init(project=os.environ.get("WANDB_PROJECT", "qlorafit"), name=name, dir=str(run_dir),
                              config=config, reinit="finish_previous")
    return (lambda scalars, step: run.log(scalars, step=step)), run.finish


def _mlflow(run_dir: Path, name: str, config: dict):
    mlflow = _need("mlflow")
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "qlorafit"))
    run_id = mlflow.start_run(run_name=name).info.run_id
    mlflow.log_params({k: str(v)[:500] for k, v in _flat(config).items()})
    # MLflow's metric names allow '/': the same keys as the other trackers
    return (lambda scalars, step: mlflow.log_metrics({k: float(v) for k, v in scalars.items()}, step=step,
                                                     run_id=run_id)), mlflow.end_run


def _trackio(run_dir: Path, name: str, config: dict):
    trackio = _need("trackio")
    trackio.init(project=os.environ.get("TRACKIO_PROJECT", "qlorafit"), name=name, config=config)
    return (lambda scalars, step: trackio.log(scalars, step=step)), trackio.finish


BACKENDS = {"tensorboard": _tensorboard, "wandb": _wandb, "mlflow": _mlflow, "trackio": _trackio}


def check_installed(t: TrainConfig) -> None:
    """A one-line error naming the pip command for the first tracker whose package is missing: called before the
    model load, so a missing extra costs a second, not a load."""
    for n in names(t):
        _need(n, "train.report_to" if n in t.report_to else "train.tensorboard")


class Trackers:
    """The trackers of one run; Monitor forwards every metrics row and event here."""

    def __init__(self, names: list[str], run_dir: Path, config: dict):
        self.backends, self.counts = [], {}
        name = Path(run_dir).resolve().name
        try:
            for n in dict.fromkeys(names):  # each once, in the order given
                self.backends.append(BACKENDS[n](Path(run_dir), name, config))
        except BaseException:
            self.close()
            raise

    def metrics(self, row: dict) -> None:
        scalars = {(f"memory/{k}" if k.startswith(("mem_", "host_")) else f"train/{k}"): v for k, v in row.items()
                   if _scalar(v) and k not in ("step", "time")}
        self._log(scalars, row["step"])

    def event(self, kind: str, step: int, fields: dict) -> None:
        if kind == "eval":
            self._log({f"eval/{k}": v for k, v in fields.items() if _scalar(v) and k != "seconds"}, step)
            return
        if kind in SKIP_EVENTS:
            return
        self.counts[kind] = self.counts.get(kind, 0) + 1
        scalars = {f"events/{kind}/count": self.counts[kind]}
        scalars.update({f"events/{kind}/{k}": v for k, v in fields.items() if _scalar(v)})
        self._log(scalars, step)

    def _log(self, scalars: dict, step: int) -> None:
        if scalars:
            for log, _ in self.backends:
                log(scalars, step)

    def close(self) -> None:
        backends, self.backends = self.backends, []
        for _, close in backends:
            close()


def _scalar(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and all(isinstance(x, str) for x in v):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
