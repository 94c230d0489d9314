"""The models and metrics of a run, with their plugins looked up and options parsed.

Every task plans its models and metrics with these (:mod:`recbench.tasks.base`): a model
becomes one :class:`ModelPlan` per variant of its option sweep (:mod:`recbench.config.sweep`),
a metric one :class:`MetricPlan`. Each knows its entry in the resolved configuration that
is stored with the results (``config.json``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from recbench.config import sweep
from recbench.config.options import as_dict, parse_options

if TYPE_CHECKING:
    from recbench.registry import PluginInfo, Registry


@dataclass(frozen=True)
class ModelPlan:
    """A model of the run: its plugin, parsed options, and label (the id, or the id
    with the swept option values for a variant of a sweep, ``moc[mixtures=2]``)."""

    info: PluginInfo
    options: Any
    label: str
    swept: Mapping[str, Any] = field(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        """The model's entry in the resolved configuration (``models[label]``)."""
        return {
            "id": self.info.id,
            "version": self.info.version,
            "options": as_dict(self.options),
            **({"swept": dict(self.swept)} if self.swept else {}),
            **({"baseline": True} if self.info.baseline else {}),
        }

    def default_options(self) -> dict[str, Any]:
        """The model's options as its class declares them, before any ``-o`` (stored in
        ``config.json`` so that the report can show which options a run changed)."""
        return as_dict(self.info.cls.Options())

    def cell_fields(self, label: str) -> dict[str, Any]:
        """What each cell file of the model records about it; ``label`` is the cell's
        ``model_label`` (the plan's label, or that of an ablation of it)."""
        return {
            "model": self.info.id,
            "model_label": label,
            "model_version": self.info.version,
            "model_options": as_dict(self.options),
            "model_distribution": self.info.distribution,
            "model_distribution_version": self.info.distribution_version,
        }


@dataclass(frozen=True)
class MetricPlan:
    """A metric of the run: its plugin and parsed options."""

    info: PluginInfo
    options: Any

    def resolved(self) -> dict[str, Any]:
        """The metric's entry in the resolved configuration (``metrics[id]``)."""
        return {
            "version": self.info.version,
            "options": as_dict(self.options),
            "higher_is_better": bool(self.info.cls.higher_is_better),
            "per_query": bool(self.info.cls.per_query),
        }


def model_plans(info: PluginInfo, options: Mapping[str, Mapping[str, Any]]) -> list[ModelPlan]:
    """One plan per variant of the model's options (:mod:`recbench.config.sweep`)."""
    variants = sweep.expand(info.id, info.cls.Options, options.get(info.id, {}))
    return [
        ModelPlan(
            info,
            parse_options(info.cls.Options, variant.values, owner=f"model '{variant.label}'"),
            variant.label,
            dict(variant.swept),
        )
        for variant in variants
    ]


def task_metrics(registry: Registry, task: str) -> list[PluginInfo]:
    """Every registered metric of ``task``, in registration order: a run's metrics when
    it names none."""
    return [info for info in registry.all("metric") if info.task == task]


def metric_plans(
    infos: Sequence[PluginInfo], options: Mapping[str, Mapping[str, Any]]
) -> tuple[MetricPlan, ...]:
    """The plans of the metrics ``infos``, their options parsed from ``options``."""
    return tuple(
        MetricPlan(
            info,
            parse_options(info.cls.Options, options.get(info.id, {}), owner=f"metric '{info.id}'"),
        )
        for info in infos
    )
