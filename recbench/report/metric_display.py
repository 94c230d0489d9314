"""How the report shows a run's metrics: which are its headline metrics, in what order,
and which values are counts.

Metrics declare it (``headline``, ``count``: :data:`recbench.contracts.OPTIONAL_ATTRIBUTES`)
and a run stores it in ``config.json`` (``metric_display``), so the report names no
metric. Runs stored before ``metric_display`` existed were made with recbench's own
metrics only; :data:`STORED_BEFORE_DISPLAY` is what those metrics declared then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The display of recbench's own metrics in runs stored without ``metric_display``.
STORED_BEFORE_DISPLAY: Mapping[str, Mapping[str, Any]] = {
    "sps": {"headline": 0, "count": False},
    "recall": {"headline": 1, "count": False},
    "mrr": {"headline": 2, "count": False},
    "ndcg": {"headline": 3, "count": False},
    "hit": {"headline": 4, "count": False},
    "item_coverage": {"headline": None, "count": True},
    "rmse": {"headline": 0, "count": False},
    "mae": {"headline": 1, "count": False},
}


@dataclass(frozen=True)
class MetricDisplay:
    """The stored display of a run's metrics (metric id -> ``headline``, ``count``)."""

    entries: Mapping[str, Mapping[str, Any]]

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> MetricDisplay:
        """The display stored in a run's resolved configuration (for a run stored
        without one: :data:`STORED_BEFORE_DISPLAY`, for the run's metrics)."""
        if "metric_display" in config:
            return cls(config["metric_display"])
        return cls({m: STORED_BEFORE_DISPLAY.get(m, {}) for m in config.get("metrics", {})})

    def headlines(self, present: Any = None) -> list[str]:
        """The headline metric ids, most important first; only those in ``present``
        when it is given."""
        ranked = [
            (entry["headline"], metric_id)
            for metric_id, entry in self.entries.items()
            if entry.get("headline") is not None
        ]
        ids = [metric_id for _, metric_id in sorted(ranked)]
        return ids if present is None else [m for m in ids if m in present]

    def rank(self, metric_id: str) -> tuple[int, str]:
        """A sort key: headline metrics in their order, then the others by id."""
        headline = self.entries.get(metric_id, {}).get("headline")
        return (len(self.entries) if headline is None else int(headline), metric_id)

    def is_count(self, metric_id: str) -> bool:
        """Whether the metric's values are counts (shown without decimals)."""
        return bool(self.entries.get(metric_id, {}).get("count", False))
