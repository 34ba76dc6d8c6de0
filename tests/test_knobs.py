"""One declaration per knob: the options table and the Config <-> Setup link in Setup's field metadata.

Every Setup field round-trips Config -> Setup -> Config and CLI flag -> Setup; the modules that read a knob read its
spec, not its name.
"""

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from qlorafit.core import config as C
from qlorafit.core import options as O
from qlorafit.core.plan import PlanRequest, search_axes
from qlorafit.core.setup import (KNOBS, PLANNED_KEYS, STACK_DEFAULTS, Setup, apply_setup, choices, keep_planned, knobs,
                                 setup_from_config)

SRC = Path(__file__).resolve().parents[1] / "src" / "qlorafit"


def _other_value(f, current):
    """A valid value of Setup field `f` different from `current`."""
    if choices(f):  # 'auto' checkpointing is not a Setup value: Setup resolves it for its micro-batch
        return next(c for c in reversed(choices(f)) if c not in (current, O.AUTO_CHECKPOINTING))
    if current is None:
        return False
    if isinstance(current, bool):
        return not current
    if isinstance(current, tuple):
        return ("q_proj", "v_proj") if current != ("q_proj", "v_proj") else ("all-linear",)
    if isinstance(current, float):
        return 0.0 if current else 0.1
    return current * 2 if current else 4096


def test_every_setup_field_is_declared():
    for f in KNOBS:
        m = f.metadata
        assert m["help"] and m["flag"], f.name
        # unlinked: the trainer (stack) and what is installed where the run goes (liger), not train config keys
        assert m["config"] or f.name in ("stack", "liger"), f"{f.name}: no train config key"
        if m["role"] == "searched" and f.name not in ("batch_size", "packing"):
            assert m["plan_axis"] in {x.name for x in dataclasses.fields(PlanRequest)}, f.name


def test_setup_defaults_are_the_train_configs():
    s, d = setup_from_config(C.Config()), Setup()
    for f in knobs(linked=True):
        if f.name != "expandable_segments":  # None: the stack's own default (qlorafit: on, as the config says)
            assert getattr(s, f.name) == getattr(d, f.name), f.name
    assert d.expandable() == C.Config().guard.expandable_segments


@pytest.mark.parametrize("f", knobs(linked=True), ids=lambda f: f.name)
def test_config_to_setup_to_config_round_trips(f):
    base = C.Config()
    value = _other_value(f, getattr(Setup(), f.name))
    changed = apply_setup(base, dataclasses.replace(Setup(), **{f.name: value}))
    section, _, key = f.metadata["config"].partition(".")
    assert getattr(getattr(changed, section), key) != getattr(getattr(base, section), key), f"{f.name} not written"
    s = setup_from_config(changed)
    assert getattr(s, f.name) == value
    assert C.to_dict(apply_setup(changed, s)) == C.to_dict(changed)  # nothing else moves
    assert C.to_dict(C.from_dict(C.to_dict(changed))) == C.to_dict(changed)  # and the config validates


def test_compute_dtype_auto_stays_auto():
    cfg = C.Config()
    for bf16 in (True, False, None):
        assert apply_setup(cfg, setup_from_config(cfg, bf16)).model.compute_dtype == "auto"


@pytest.mark.parametrize("f", KNOBS, ids=lambda f: f.name)
def test_cli_flag_sets_the_field(f):
    from qlorafit.commands.estimate import add_setup_arguments, setup_from_args

    p = argparse.ArgumentParser()
    add_setup_arguments(p)
    assert setup_from_args(p.parse_args([])) == Setup()
    value = _other_value(f, getattr(Setup(), f.name))
    flag = f.metadata["flag"][0]
    if isinstance(value, bool):
        argv = [flag if value else "--no-" + flag[2:]]
    else:
        argv = [flag, ",".join(value) if isinstance(value, tuple) else str(value)]
    # --stack hf alone also brings the hf stack's own defaults (its loss: the Trainer has no chunked loss)
    expected = dataclasses.replace(Setup(), **{f.name: value, **(STACK_DEFAULTS.get(value, {}) if f.name == "stack"
                                                                 else {})})
    assert setup_from_args(p.parse_args(argv)) == expected


def test_plan_cli_takes_every_fixed_field():
    from qlorafit.commands import plan as P

    p = argparse.ArgumentParser()
    P.add_arguments(p)
    dests = {a.dest for a in p._actions}
    assert {f.name for f in knobs("fixed")} <= dests


def test_resume_keeps_every_planned_key():
    changes = {f.name: _other_value(f, getattr(Setup(), f.name)) for f in knobs("searched")}
    planned = apply_setup(C.Config(), dataclasses.replace(Setup(), **changes))
    planned.train.grad_accum = 3
    kept = keep_planned(C.Config(), planned)
    for key in PLANNED_KEYS:
        section, _, name = key.partition(".")
        assert getattr(getattr(kept, section), name) == getattr(getattr(planned, section), name) != \
            getattr(getattr(C.Config(), section), name), key


def test_search_axes_are_the_searched_fields():
    axes = search_axes(PlanRequest(budget_bytes=1))
    assert set(axes) == {f.name for f in knobs("searched") if f.metadata["plan_axis"]}
    assert axes["optimizer"] == O.plannable(O.OPTIMIZERS)


def test_config_choices_are_the_options():
    fields = {f"{s}.{f.name}": f for s, cls in (("train", C.TrainConfig), ("model", C.ModelConfig))
              for f in dataclasses.fields(cls)}
    assert fields["train.optimizer"].metadata["choices"] == O.names(O.OPTIMIZERS)
    assert fields["train.loss_impl"].metadata["choices"] == O.names(O.LOSSES)
    assert fields["train.grad_checkpointing"].metadata["choices"] == O.names(O.CHECKPOINTING) + (O.AUTO_CHECKPOINTING,)
    assert fields["model.quant"].metadata["choices"] == O.names(O.QUANTS)


def test_optimizer_specs_size_states_and_name_their_builders():
    assert O.optimizer("adamw").state_bytes(1000) == 8000
    assert O.optimizer("paged_adamw_8bit").state_bytes(1000) == 2000 + 2 * 4 * 4  # + absmax per 256 values
    for o in O.OPTIMIZERS:
        module, sep, attr = o.builder.partition(":")
        assert sep and module and attr, o.name
        assert O.optimizer_from_hf(o.hf_names[0]) == o.name
    assert O.eight_bit_twin(paged=True) == "paged_adamw_8bit" and O.eight_bit_twin(paged=False) == "adamw_8bit"


def test_a_new_optimizer_is_one_spec(monkeypatch):
    """A spec the planner may not pick is sized by the estimator, never swapped in, and kept when the user chose it."""
    from qlorafit.core.catalog import resolve_model
    from qlorafit.core.estimate import estimate
    from qlorafit.core.plan import plan

    lion = O.Optimizer("lion_8bit", "8-bit Lion", 1, 8, False, 1, ("lion_8bit",), "bitsandbytes.optim:Lion8bit",
                       plannable=False)
    monkeypatch.setattr(O, "OPTIMIZERS", O.OPTIMIZERS + (lion,))
    shape = resolve_model("llama-3.2-1b")
    adam8 = estimate(shape, Setup(optimizer="adamw_8bit"))
    est = estimate(shape, Setup(optimizer="lion_8bit"))
    assert est.component("optimizer states") * 2 == adam8.component("optimizer states")
    r = plan(shape, PlanRequest(budget_bytes=24 * 1024**3, base=Setup(optimizer="lion_8bit")))
    assert {c.setup.optimizer for c in r.ranked} == {"lion_8bit"}  # the user's choice kept, never swapped
    r = plan(shape, PlanRequest(budget_bytes=24 * 1024**3))
    assert "lion_8bit" not in {c.setup.optimizer for c in r.ranked}  # and never swapped in


def test_no_module_tests_a_knob_name():
    """Every module reads specs (core, runtime, doctor, commands): no `x == "adamw_8bit"`, `mode == "offload"`,
    `stack == "hf"`. Left out: options.py itself, and the strings of other tools that happen to share a name: the
    doctor's parsing of other trainers' settings (bf16=True, bnb_4bit_quant_type) and transformers'
    _attn_implementation in collate."""
    names = "|".join(sorted({n for kind in O.KINDS for n in O.names(O.specs(kind))} | {"8bit"}, key=len,
                            reverse=True))
    pattern = re.compile(rf'(==|!=|\bin) *\(?"({names})"|"({names})" *(==|!=|\bin\b)')
    foreign = {"options.py", "settings.py", "foreign.py", "evidence.py", "rules_setup.py", "collate.py"}
    found = [f"{p.name}:{i}: {line.strip()}" for p in SRC.rglob("*.py") if p.name not in foreign
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found


def test_the_spec_and_guard_examples_hold():
    """The doctests that show the escalation ladder read from CHECKPOINTING's order (options.stronger_checkpointing,
    guard.escalate) and the 8-bit state sizing."""
    import doctest

    from qlorafit.runtime import guard as G

    assert doctest.testmod(O).failed == 0 and doctest.testmod(O).attempted > 0
    assert doctest.testmod(G).failed == 0 and doctest.testmod(G).attempted > 0
