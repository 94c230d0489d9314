"""``tuned.toml``: the tuned options of every model in the ``--config`` format of
``recbench run``, with a ``[tuning]`` table saying how they were tuned, and which studies
had not spent their budget (read by the run's report)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from recbench.data.files import write_bytes_atomic
from recbench.tuning.budget import model_budget, unfinished
from recbench.tuning.study import stored_study

if TYPE_CHECKING:
    from recbench.tuning.plan import TunePlan


def best_options(plan: TunePlan, study: optuna.Study | None, model: str) -> dict[str, Any] | None:
    """The fixed options and the best completed trial's values of ``model``'s ``study``
    (``None``: no trial completed, or no study)."""
    if study is None:
        return None
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return None
    best = max(completed, key=lambda t: (t.value, -t.number))
    return {**plan.run.config.options.get(model, {}), **best.params}


def write_tuned_config(path: Path, plan: TunePlan, storage: Any) -> None:
    """Write ``tuned.toml`` for ``plan``'s models from the studies in ``storage``."""
    request = plan.request
    lines = [
        "# Written by recbench tune: the best options found on validation users.",
        f"# Run the tuned benchmark with: recbench run --config {path.name} --out RUN_DIR",
        f"models = {_toml([m.id for m in plan.models])}",
        f"dataset = {_toml(request.dataset)}",
        f"protocols = {_toml([plan.protocol])}",
        "",
    ]
    tuned: dict[str, dict[str, Any]] = {}
    short: dict[str, str] = {}
    for info in plan.models:
        study = stored_study(storage, info.id)
        options = best_options(plan, study, info.id)
        tuned[info.id] = {"tuned": options is not None}
        used = unfinished(study, model_budget(request.budget, info))
        if used is not None:
            short[info.id] = used
        if options:
            lines += [f"[options.{info.id}]"]
            lines += [f"{key} = {_toml(value)}" for key, value in options.items()]
            lines.append("")
    # The tuned run validates (early stopping) under the protocol its trials validated on,
    # and every seed of it tests the test users of the tune's split: seeds that re-split
    # would test users the tune trained or validated on.
    sections = {**request.options}
    sections["eval"] = {**sections.get("eval", {}), "validation_protocol": plan.protocol}
    sections["split"] = {**sections.get("split", {}), "seed": plan.split_seed}
    for section, values in sections.items():
        if section not in tuned and values:
            lines += [f"[options.{_key(section)}]"]
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
            lines.append("")
    lines += [
        "[tuning]",
        'study = "."',
        f"report = {_toml('report.md')}",
        f"metric = {_toml(request.metric)}",
        f"protocol = {_toml(plan.protocol)}",
        f"budget = {_toml(request.budget.describe())}",
        f"seed = {request.seed}",
        f"split_seed = {plan.split_seed}",
        f"validation_users = {_toml(request.validation_users)}",
        f"models = {_toml([m for m, v in tuned.items() if v['tuned']])}",
        *([f"unfinished = {_toml(short)}"] if short else []),
        "",
    ]
    write_bytes_atomic(path, "\n".join(lines).encode())


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else json.dumps(name)


def _toml(value: Any) -> str:
    """A TOML value; ``None`` is written ``"none"``, which an optional option reads as None."""
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))
