"""Synthetic interaction sequences with learnable sequential structure.

The generator is deterministic for a given seed and options. It produces:

* **power-law item popularity**: item weights follow Zipf's law,
  ``weight ∝ rank ** -popularity_exponent``, over a random permutation of the items;
* **topics**: every item belongs to one of ``n_topics`` topics. Each user has three
  favourite topics and a current topic, which is kept with probability
  ``topic_stickiness`` at every step and otherwise replaced (a favourite with probability
  0.8, any topic by popularity otherwise);
* **item-to-item transitions**: every item has ``n_successors`` fixed successors (mostly
  from its own topic). With probability ``follow_probability`` the next item is one of
  the current item's successors; otherwise it is drawn by popularity within the user's
  current topic. A next-item model can learn the successor table and the topics;
  a popularity baseline cannot;
* **heavy-tailed sequence lengths**: ``min_length`` plus a log-normal share of the
  remaining events, capped at half the catalogue (:data:`MAX_LENGTH_SHARE`);
* **timestamps** increasing within each user (seconds; ~10% of events share the
  previous event's second, as batch ratings do), from a random start between 2000 and
  2015;
* **ratings** 1..5 from a user bias, an item bias (popular items are rated higher) and
  noise, so the rating track has signal.

With ``repeats=False`` (the default) no user has an item twice: a drawn item the user
already has is redrawn (from the topic, then uniformly), and after a few failed draws
an unseen item is taken from a bit set of the user's items.

The simulation loops over time steps only; each step is a handful of numpy operations
over all users still active (users sorted by length), in chunks of users that bound the
memory of the bit sets.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np

from recbench.plugin import DataContext, Interactions

#: Changes whenever the same options would generate different data.
GENERATOR_VERSION = 1
#: Longest sequence, as a share of the catalogue (keeps repeat-free sampling cheap).
MAX_LENGTH_SHARE = 0.5
#: Chance that a topic switch goes to one of the user's favourite topics.
FAVOURITE_TOPIC_SHARE = 0.8
#: Favourite topics per user.
FAVOURITE_TOPICS = 3
#: Redraws of an item the user already has: within the topic, then uniform.
TOPIC_REDRAWS = 3
UNIFORM_REDRAWS = 3
#: Bytes of repeat-checking bit sets held at once (users are simulated in chunks).
BITSET_BUDGET_BYTES = 64 << 20

Size = Literal["tiny", "small", "medium", "ml-1m", "ml-20m"]


@dataclass(frozen=True)
class _Preset:
    n_users: int
    n_items: int
    n_events: int
    min_length: int
    n_topics: int


#: Size presets. ``ml-1m`` and ``ml-20m`` match the MovieLens counts of users, items and
#: events (the values, not the data).
PRESETS: dict[str, _Preset] = {
    "tiny": _Preset(200, 100, 5_000, 5, 5),
    "small": _Preset(2_000, 1_000, 100_000, 5, 20),
    "medium": _Preset(20_000, 5_000, 1_000_000, 10, 50),
    "ml-1m": _Preset(6_040, 3_706, 1_000_209, 20, 50),
    "ml-20m": _Preset(138_493, 26_744, 20_000_263, 20, 200),
}


@dataclass(frozen=True)
class SyntheticOptions:
    """Options of the ``synthetic`` dataset.

    ``size`` picks a preset (tiny: 200 users, 100 items, 5,000 events; small: 2,000 /
    1,000 / 100,000; medium: 20,000 / 5,000 / 1,000,000; ml-1m: 6,040 / 3,706 /
    1,000,209; ml-20m: 138,493 / 26,744 / 20,000,263). ``n_users``, ``n_items``,
    ``n_events``, ``n_topics`` and ``min_length`` override it (0 keeps the preset's).
    """

    size: Size = "small"
    n_users: int = 0
    n_items: int = 0
    n_events: int = 0
    seed: int = 0
    n_topics: int = 0
    min_length: int = 0
    follow_probability: float = 0.5
    n_successors: int = 3
    topic_stickiness: float = 0.9
    popularity_exponent: float = 1.0
    repeats: bool = False

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_events", "n_topics", "min_length"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (the preset's) or positive")
        for name in ("follow_probability", "topic_stickiness"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.n_successors < 1:
            raise ValueError("n_successors must be at least 1")
        if self.popularity_exponent < 0:
            raise ValueError("popularity_exponent must not be negative")
        config = self.resolved()
        max_length = max_sequence_length(config.n_items)
        if config.min_length > max_length:
            raise ValueError(
                f"min_length {config.min_length} exceeds the longest sequence {max_length} "
                f"({MAX_LENGTH_SHARE:g} of n_items {config.n_items})"
            )
        if not config.n_users * config.min_length <= config.n_events <= config.n_users * max_length:
            smallest, largest = config.n_users * config.min_length, config.n_users * max_length
            raise ValueError(
                f"n_events must lie between n_users x min_length = {smallest:,} "
                f"and n_users x {max_length} (the longest sequence) = {largest:,}"
            )

    def resolved(self) -> GeneratorConfig:
        """The generator's parameters: these options with every 0 replaced by the
        preset's value."""
        preset = PRESETS[self.size]
        n_items = self.n_items or preset.n_items
        return GeneratorConfig(
            n_users=self.n_users or preset.n_users,
            n_items=n_items,
            n_events=self.n_events or preset.n_events,
            n_topics=min(self.n_topics or preset.n_topics, n_items),
            min_length=self.min_length or preset.min_length,
            seed=self.seed,
            follow_probability=self.follow_probability,
            n_successors=self.n_successors,
            topic_stickiness=self.topic_stickiness,
            popularity_exponent=self.popularity_exponent,
            repeats=self.repeats,
        )


@dataclass(frozen=True)
class GeneratorConfig:
    """Fully resolved generator parameters (see :class:`SyntheticOptions`)."""

    n_users: int
    n_items: int
    n_events: int
    n_topics: int
    min_length: int
    seed: int
    follow_probability: float
    n_successors: int
    topic_stickiness: float
    popularity_exponent: float
    repeats: bool


def max_sequence_length(n_items: int) -> int:
    """The longest sequence the generator makes for a catalogue of ``n_items``."""
    return max(1, int(MAX_LENGTH_SHARE * n_items))


class SyntheticDataset:
    """Deterministic synthetic sequences (see the module docstring for the model)."""

    id: ClassVar[str] = "synthetic"
    summary: ClassVar[str] = "Synthetic sequences: Zipf popularity, sticky topics, item successors"
    version: ClassVar[str] = str(GENERATOR_VERSION)
    Options: ClassVar[type] = SyntheticOptions
    argument_option: ClassVar[str | None] = "size"

    def __init__(self, options: SyntheticOptions):
        self.options = options

    def fingerprint(self, ctx: DataContext) -> str:
        resolved = dataclasses.asdict(self.options.resolved())
        return f"generator {GENERATOR_VERSION}:" + json.dumps(resolved, sort_keys=True)

    def load(self, ctx: DataContext) -> Interactions:
        return generate(self.options)


def generate(options: SyntheticOptions) -> Interactions:
    """Generate the events described by ``options``.

    Returns
    -------
    Interactions
        ``n_events`` rows ordered by user, then time: ``user`` (``int32``, 1..n_users),
        ``item`` (``int32``, 1..n_items), ``timestamp`` (``int64`` seconds, increasing
        within a user) and ``rating`` (``float32``, 1..5).
    """
    config = options.resolved()
    rng = np.random.default_rng(config.seed)
    lengths = _sequence_lengths(rng, config)
    offsets = np.zeros(config.n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    catalogue = _Catalogue.build(rng, config)
    favourites = catalogue.draw_topics(rng.random((config.n_users, FAVOURITE_TOPICS)))
    items = _simulate(rng, config, catalogue, lengths, offsets, favourites)
    users = np.repeat(np.arange(config.n_users, dtype=np.int32), lengths)
    timestamps = _timestamps(rng, config, lengths, offsets)
    ratings = _ratings(rng, config, catalogue, users, items)
    users += 1
    items += 1
    return Interactions(user=users, item=items, timestamp=timestamps, rating=ratings)


def _sequence_lengths(rng: np.random.Generator, config: GeneratorConfig) -> np.ndarray:
    """``min_length`` plus a log-normal share of the remaining events, capped; sums to
    ``n_events`` exactly."""
    n_users, cap = config.n_users, max_sequence_length(config.n_items)
    weights = rng.lognormal(0.0, 1.2, n_users)
    lengths = np.full(n_users, config.min_length, dtype=np.int64)
    remaining = config.n_events - int(lengths.sum())
    while remaining > 0:
        open_users = lengths < cap
        share = np.where(open_users, weights, 0.0)
        lengths += rng.multinomial(remaining, share / share.sum())
        excess = np.maximum(lengths - cap, 0)
        lengths -= excess
        remaining = int(excess.sum())
    return lengths


@dataclass(frozen=True)
class _Catalogue:
    """Items (indices ``0..n_items-1``), their topics, popularity and successors."""

    popularity: np.ndarray  # [n_items] float64, sums to 1
    topic: np.ndarray  # [n_items] int32
    topic_cdf: np.ndarray  # [n_topics] cumulative topic popularity, last = 1
    items_by_topic: np.ndarray  # [n_items] item indices grouped by topic
    within_topic_cdf: np.ndarray  # [n_items] topic + cumulative share within the topic
    successors: np.ndarray  # [n_items, n_successors] int32

    @classmethod
    def build(cls, rng: np.random.Generator, config: GeneratorConfig) -> _Catalogue:
        n_items, n_topics = config.n_items, config.n_topics
        zipf = np.arange(1, n_items + 1, dtype=np.float64) ** -config.popularity_exponent
        popularity = zipf[rng.permutation(n_items)]
        popularity /= popularity.sum()
        topic_sizes = rng.dirichlet(np.full(n_topics, 2.0))
        topic = np.concatenate(
            (np.arange(n_topics), rng.choice(n_topics, n_items - n_topics, p=topic_sizes))
        ).astype(np.int32)
        rng.shuffle(topic)
        topic_mass = np.bincount(topic, weights=popularity, minlength=n_topics)
        topic_cdf = np.cumsum(topic_mass)
        topic_cdf[-1] = 1.0
        items_by_topic = np.argsort(topic, kind="stable")
        grouped_topic = topic[items_by_topic]
        cumulative = np.cumsum(popularity[items_by_topic])
        topic_end = np.cumsum(np.bincount(topic, minlength=n_topics))
        before_topic = np.concatenate(([0.0], cumulative[topic_end[:-1] - 1]))
        within_topic_cdf = (
            grouped_topic + (cumulative - before_topic[grouped_topic]) / topic_mass[grouped_topic]
        )
        within_topic_cdf[topic_end - 1] = np.arange(1, n_topics + 1)  # exact topic ends
        catalogue = cls(
            popularity, topic, topic_cdf, items_by_topic, within_topic_cdf, np.empty((0, 0))
        )
        # Successors: mostly from the item's own topic, sometimes from a popular other one.
        shape = (n_items, config.n_successors)
        successor_topic = np.where(
            rng.random(shape) < 0.8, topic[:, None], catalogue.draw_topics(rng.random(shape))
        )
        successors = catalogue.draw_items(successor_topic, rng.random(shape))
        return replace(catalogue, successors=successors)

    def draw_topics(self, uniform: np.ndarray) -> np.ndarray:
        """Topics by popularity, one per uniform number in ``[0, 1)``."""
        return np.searchsorted(self.topic_cdf, uniform, side="right").astype(np.int32)

    def draw_items(self, topics: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """Items by popularity within ``topics``, one per uniform number in ``[0, 1)``."""
        position = np.searchsorted(self.within_topic_cdf, topics + uniform, side="right")
        return self.items_by_topic[position].astype(np.int32)


def _simulate(
    rng: np.random.Generator,
    config: GeneratorConfig,
    catalogue: _Catalogue,
    lengths: np.ndarray,
    offsets: np.ndarray,
    favourites: np.ndarray,
) -> np.ndarray:
    """Item indices of all events, ``[n_events]`` int32, laid out by ``offsets``."""
    items = np.empty(config.n_events, dtype=np.int32)
    by_length = np.argsort(-lengths, kind="stable")
    bitset_bytes = (config.n_items + 7) // 8
    chunk = config.n_users if config.repeats else max(1, BITSET_BUDGET_BYTES // bitset_bytes)
    for first in range(0, config.n_users, chunk):
        users = by_length[first : first + chunk]
        seen = None if config.repeats else _empty_bitsets(len(users), config.n_items)
        _simulate_users(
            rng, config, catalogue, lengths[users], offsets[users], favourites[users], items, seen
        )
    return items


def _simulate_users(
    rng: np.random.Generator,
    config: GeneratorConfig,
    catalogue: _Catalogue,
    lengths: np.ndarray,
    starts: np.ndarray,
    favourites: np.ndarray,
    items: np.ndarray,
    seen: np.ndarray | None,
) -> None:
    """Simulate users sorted by decreasing length; at step ``t`` the active users are
    the first ``count(lengths > t)``."""
    n_users = len(lengths)
    topic = favourites[np.arange(n_users), rng.integers(FAVOURITE_TOPICS, size=n_users)]
    current = np.zeros(n_users, dtype=np.int32)
    active_at = np.searchsorted(-lengths, -np.arange(int(lengths[0])), side="left")
    for step, n_active in enumerate(active_at):
        uniform = rng.random((5, n_active))
        switch = np.flatnonzero(uniform[0] >= config.topic_stickiness)
        if len(switch):
            favourite = uniform[1, switch] < FAVOURITE_TOPIC_SHARE
            slot = (uniform[1, switch] / FAVOURITE_TOPIC_SHARE * FAVOURITE_TOPICS).astype(np.int64)
            other = catalogue.draw_topics(
                (uniform[1, switch] - FAVOURITE_TOPIC_SHARE) / (1 - FAVOURITE_TOPIC_SHARE)
            )
            slot = np.minimum(slot, FAVOURITE_TOPICS - 1)
            topic[switch] = np.where(favourite, favourites[switch, slot], other)
        user_topic = topic[:n_active]
        chosen = catalogue.draw_items(user_topic, uniform[2])
        if step > 0:
            follow = np.flatnonzero(uniform[3] < config.follow_probability)
            slot = (uniform[4, follow] * config.n_successors).astype(np.int64)
            chosen[follow] = catalogue.successors[current[follow], slot]
            user_topic[follow] = catalogue.topic[chosen[follow]]
        if seen is not None:
            _avoid_repeats(rng, catalogue, seen, user_topic, chosen)
        items[starts[:n_active] + step] = chosen
        current[:n_active] = chosen


def _empty_bitsets(n_users: int, n_items: int) -> np.ndarray:
    """One bit per (user, item); the padding bits past ``n_items`` are set (never drawn)."""
    seen = np.zeros((n_users, (n_items + 7) // 8), dtype=np.uint8)
    if n_items % 8:
        seen[:, -1] = np.uint8((0xFF << (n_items % 8)) & 0xFF)
    return seen


def _avoid_repeats(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    seen: np.ndarray,
    topic: np.ndarray,
    chosen: np.ndarray,
) -> None:
    """Replace, in place, every chosen item the user already has, then mark the choices."""
    n_items = len(catalogue.topic)

    def already_seen(rows: np.ndarray) -> np.ndarray:
        return (seen[rows, chosen[rows] >> 3] >> (chosen[rows] & 7)) & 1 == 1

    clash = np.flatnonzero(already_seen(np.arange(len(chosen))))
    for attempt in range(TOPIC_REDRAWS + UNIFORM_REDRAWS):
        if len(clash) == 0:
            break
        if attempt < TOPIC_REDRAWS:
            chosen[clash] = catalogue.draw_items(topic[clash], rng.random(len(clash)))
        else:
            chosen[clash] = rng.integers(n_items, size=len(clash), dtype=np.int32)
        clash = clash[already_seen(clash)]
    if len(clash):
        chosen[clash] = _first_unseen(rng, seen[clash])
    rows = np.arange(len(chosen))
    seen[rows, chosen >> 3] |= (1 << (chosen & 7)).astype(np.uint8)


def _first_unseen(rng: np.random.Generator, bitsets: np.ndarray) -> np.ndarray:
    """For each row of bit sets, an unset bit found from a random starting byte."""
    n_rows, n_bytes = bitsets.shape
    byte_order = (rng.integers(n_bytes, size=n_rows)[:, None] + np.arange(n_bytes)) % n_bytes
    rotated = np.take_along_axis(bitsets, byte_order, axis=1)
    first_open = np.argmax(rotated != 0xFF, axis=1)
    byte = byte_order[np.arange(n_rows), first_open]
    value = bitsets[np.arange(n_rows), byte].astype(np.int32)
    lowest_clear_bit = (~value & (value + 1)) & 0xFF
    bit = np.log2(lowest_clear_bit).astype(np.int32)
    return (byte * 8 + bit).astype(np.int32)


def _timestamps(
    rng: np.random.Generator, config: GeneratorConfig, lengths: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Seconds, increasing within each user: short gaps within sessions, long breaks
    between them, ~10% of events in the same second as the previous one."""
    start = rng.integers(946_684_800, 1_420_070_400, size=config.n_users)  # 2000 .. 2015
    session_gap = rng.lognormal(4.0, 1.2, config.n_events)  # about a minute
    long_break = rng.random(config.n_events) < 0.05
    # about two days, at most sixty
    session_gap[long_break] = np.minimum(
        rng.lognormal(12.0, 1.5, int(long_break.sum())), 60 * 86_400
    )
    session_gap[rng.random(config.n_events) < 0.1] = 0.0
    gaps = session_gap.astype(np.int64)
    gaps[offsets[:-1][lengths > 0]] = 0  # a user's first event is at the start time
    timestamps = np.cumsum(gaps)
    timestamps -= np.repeat(timestamps[offsets[:-1]] - start, lengths)
    return timestamps


def _ratings(
    rng: np.random.Generator,
    config: GeneratorConfig,
    catalogue: _Catalogue,
    users: np.ndarray,
    items: np.ndarray,
) -> np.ndarray:
    """Ratings 1..5 from a user bias, an item bias that grows with popularity, and noise."""
    log_popularity = np.log(catalogue.popularity)
    standardised = (log_popularity - log_popularity.mean()) / (log_popularity.std() or 1.0)
    item_bias = 0.3 * standardised + rng.normal(0.0, 0.35, config.n_items)
    user_bias = rng.normal(0.0, 0.4, config.n_users)
    score = 3.5 + user_bias[users] + item_bias[items] + rng.normal(0.0, 0.9, config.n_events)
    return np.clip(np.rint(score), 1, 5).astype(np.float32)
