"""Public e-commerce session logs: YOOCHOOSE (RecSys Challenge 2015), DIGINETICA (CIKM Cup
2016), RetailRocket and OTTO (Kaggle 2022).

Each dataset reads its official file as published, from ``<root>/<id>/`` (``<root>`` is
the data root, then the download folder), optionally compressed (``.gz``, ``.bz2``,
``.xz`` or a ``.zip`` holding the one file). None of them can be downloaded here: the
publishers hand them out through pages that need a login or an archive format
(7-Zip) that Python cannot unpack, and publish no checksums. A missing file is an error
that says where to get it and where to put it (see ``datasets/README.md``).

A session becomes one sequence (the ``user`` of :class:`~recbench.plugin.Interactions`
is the session id). As in the usual session-based preprocessing (Hidasi et al. 2016;
Ludewig & Jannach 2018) sessions with a single event are dropped here, before recbench's
preprocessing removes items with fewer than 5 events and then sessions shorter than 2
(its defaults ``min_item_pop=5``, ``min_user_activity=2``). Timestamps are unix seconds;
events are emitted ordered by session and exact (sub-second) time, so that events within
the same second keep their true order. Evaluate them with the session-based temporal
split: ``-o split.method=temporal -o split.test_days=1`` (YOOCHOOSE, RetailRocket) or
``test_days=7`` (DIGINETICA, OTTO).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from recbench.plugin import DataContext, DataError, Interactions
from recbench_datasets.jsonl import field, json_records
from recbench_datasets.local_files import find_local_file, local_file_fingerprint

#: Suffixes tried after the official file name, for a compressed copy.
COMPRESSED_SUFFIXES = ("", ".gz", ".bz2", ".xz", ".zip")


@dataclass(frozen=True)
class SessionLogOptions:
    """YOOCHOOSE and DIGINETICA have no options: the official files are used as they are."""


@dataclass(frozen=True)
class RetailRocketOptions:
    """Options of ``retailrocket``.

    session_gap_minutes:
        A visitor's events form one session until a pause longer than this (30 minutes,
        the usual sessionisation of these logs).
    """

    session_gap_minutes: float = 30.0

    def __post_init__(self) -> None:
        if not self.session_gap_minutes > 0:
            raise ValueError("session_gap_minutes must be positive")


class SessionLogDataset:
    """Shared loader; each log is a subclass that fills in the class attributes."""

    id: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = SessionLogOptions
    argument_option: ClassVar[str | None] = None

    #: The official file name.
    file_name: ClassVar[str]
    #: Where the file is published (shown when it is missing).
    source: ClassVar[str]
    #: How to get the file (``{source}`` is replaced by :attr:`source`).
    instructions: ClassVar[str]
    #: The format of a line, for error messages.
    line_format: ClassVar[str]

    def __init__(self, options: object):
        self.options = options

    def fingerprint(self, ctx: DataContext) -> str:
        return local_file_fingerprint(self.find(ctx), self.file_name)

    def load(self, ctx: DataContext) -> Interactions:
        path = self.find(ctx)
        if path is None:
            expected = ctx.data_root / self.id / self.file_name
            raise DataError(
                f"{self.id} needs its official file {self.file_name}, which recbench cannot "
                "download",
                where=str(expected),
                hint=f"{self.instructions.format(source=self.source)}, and put "
                f"{self.file_name} (or a .gz/.bz2/.xz/.zip of it) at {expected}",
            )
        try:
            session, item, time_ms = self.parse(path)
        except (ValueError, KeyError, pd.errors.ParserError, OSError, EOFError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"cannot read {path.name} as the official {self.id} file ({reason})",
                where=str(path),
                hint=f"expected lines of {self.line_format}; check that it is the right file",
            ) from None
        if len(session) == 0:
            raise DataError(
                f"{path.name} has no events",
                where=str(path),
                hint="check that it is the right file",
            )
        return session_interactions(session, item, time_ms)

    def find(self, ctx: DataContext) -> Path | None:
        """The official file (or a compressed copy) under the data or download root."""
        names = (f"{self.file_name}{suffix}" for suffix in COMPRESSED_SUFFIXES)
        return find_local_file(ctx, self.id, names)

    def parse(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Session ids, item ids and times in milliseconds of every event, file order."""
        raise NotImplementedError


def session_interactions(
    session: np.ndarray, item: np.ndarray, time_ms: np.ndarray
) -> Interactions:
    """Events ordered by (session, exact time, file order), without single-event
    sessions, with times in whole unix seconds."""
    order = np.lexsort((time_ms, session))
    session, item, time_ms = session[order], item[order], time_ms[order]
    sizes = np.unique(session, return_counts=True)
    single = sizes[0][sizes[1] == 1]
    keep = ~np.isin(session, single)
    return Interactions(
        user=session[keep],
        item=item[keep],
        timestamp=np.floor_divide(time_ms[keep], 1000).astype(np.int64),
    )


def _milliseconds(stamps: pd.Series, format: str) -> np.ndarray:
    parsed = pd.to_datetime(stamps, format=format, utc=True)
    return parsed.to_numpy(dtype="datetime64[ms]").astype(np.int64)


class Yoochoose(SessionLogDataset):
    id = "yoochoose"
    aliases = ("rsc15",)
    summary = "YOOCHOOSE clicks (RecSys Challenge 2015): e-commerce click sessions, 2014"
    file_name = "yoochoose-clicks.dat"
    source = "the RecSys Challenge 2015 (https://recsys.acm.org/recsys15/challenge/)"
    instructions = (
        "download the challenge data yoochoose-data.7z from {source}, unpack it with 7-Zip"
    )
    line_format = "'session,timestamp,item,category' (no header)"

    def parse(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = pd.read_csv(
            path,
            header=None,
            names=["session", "timestamp", "item", "category"],
            usecols=["session", "timestamp", "item"],
            dtype={"session": np.int64, "timestamp": str, "item": np.int64},
            engine="c",
        )
        time_ms = _milliseconds(table["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        return table["session"].to_numpy(), table["item"].to_numpy(), time_ms


class Diginetica(SessionLogDataset):
    id = "diginetica"
    aliases = ("cikm16",)
    summary = "DIGINETICA item views (CIKM Cup 2016): e-commerce sessions, 2016"
    file_name = "train-item-views.csv"
    source = "the CIKM Cup 2016 Track 2 (https://competitions.codalab.org/competitions/11161)"
    instructions = "download the training data dataset-train-diginetica.zip from {source}, unzip it"
    line_format = (
        "'sessionId;userId;itemId;timeframe;eventdate' or "
        "'session_id;user_id;item_id;timeframe;eventdate' (with that header)"
    )
    #: The header spellings in circulation: the official one, and the one of the copies
    #: that many session-based recommendation repositories share.
    headers: ClassVar[tuple[tuple[str, str], ...]] = (
        ("sessionId", "itemId"),
        ("session_id", "item_id"),
    )

    def parse(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        names = set(pd.read_csv(path, sep=";", nrows=0).columns)
        session, item = next((pair for pair in self.headers if set(pair) <= names), self.headers[0])
        # The user column is not read: it is empty or NA for anonymous sessions.
        table = pd.read_csv(
            path,
            sep=";",
            header=0,
            usecols=[session, item, "timeframe", "eventdate"],
            dtype={session: np.int64, item: np.int64, "timeframe": np.int64},
            engine="c",
        )
        # The event's time: its day plus the milliseconds since the session started.
        day_ms = _milliseconds(table["eventdate"], "%Y-%m-%d")
        time_ms = day_ms + table["timeframe"].to_numpy()
        return table[session].to_numpy(), table[item].to_numpy(), time_ms


class RetailRocket(SessionLogDataset):
    id = "retailrocket"
    summary = "RetailRocket item views: e-commerce visitor events, 2015, cut into sessions"
    Options = RetailRocketOptions
    file_name = "events.csv"
    source = "Kaggle (https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset)"
    instructions = "download the dataset from {source} (a Kaggle account is needed), unzip it"
    line_format = "'timestamp,visitorid,event,itemid,transactionid' (with that header)"

    def parse(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = pd.read_csv(
            path,
            header=0,
            usecols=["timestamp", "visitorid", "event", "itemid"],
            dtype={"timestamp": np.int64, "visitorid": np.int64, "event": str, "itemid": np.int64},
            engine="c",
        )
        visitor = table["visitorid"].to_numpy()
        time_ms = table["timestamp"].to_numpy()
        # Sessions from every event type (views, carts, purchases), then keep the views.
        order = np.lexsort((time_ms, visitor))
        seconds = time_ms[order] // 1000
        options: RetailRocketOptions = self.options  # type: ignore[assignment]
        gap = options.session_gap_minutes * 60
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = (visitor[order][1:] != visitor[order][:-1]) | (np.diff(seconds) > gap)
        session = np.empty(len(order), dtype=np.int64)
        session[order] = np.cumsum(starts)
        views = (table["event"] == "view").to_numpy()
        return session[views], table["itemid"].to_numpy()[views], time_ms[views]


#: The event types of OTTO sessions.
OTTO_EVENT_TYPES = ("clicks", "carts", "orders")


@dataclass(frozen=True)
class OttoOptions:
    """Options of ``otto``.

    event_types:
        The event types that become events (a comma-separated list of ``clicks``,
        ``carts`` and ``orders``). Clicks only by default: a sequence of item views, as in
        the other session logs; carts and orders mostly repeat items clicked just before.
    """

    event_types: tuple[str, ...] = ("clicks",)

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.event_types if kind not in OTTO_EVENT_TYPES]
        if unknown or not self.event_types:
            raise ValueError(
                f"event_types must be a non-empty list of {', '.join(OTTO_EVENT_TYPES)}, "
                f"got {','.join(self.event_types) or 'nothing'}"
            )


class Otto(SessionLogDataset):
    id = "otto"
    summary = "OTTO sessions (Kaggle 2022): e-commerce clicks, carts and orders, 4 weeks"
    Options = OttoOptions
    file_name = "train.jsonl"
    source = "Kaggle (https://www.kaggle.com/datasets/otto/recsys-dataset)"
    instructions = "download the dataset from {source} (a Kaggle account is needed), unzip it"
    line_format = '{"session": 1, "events": [{"aid": 2, "ts": 1659304800025, "type": "clicks"}]}'

    def parse(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        options: OttoOptions = self.options  # type: ignore[assignment]
        wanted = frozenset(options.event_types)
        sessions, items, times = array("q"), array("q"), array("q")
        for number, record in json_records(path):
            session = field(record, "session", path, number)
            events = field(record, "events", path, number)
            if type(session) is not int or not isinstance(events, list):
                raise _malformed(path, number, "'session' must be an integer, 'events' a list")
            for event in events:
                if not isinstance(event, dict):
                    raise _malformed(path, number, "every event must be an object")
                kind = field(event, "type", path, number)
                if kind not in OTTO_EVENT_TYPES:
                    raise _malformed(path, number, f"unknown event type {kind!r}")
                aid, ts = field(event, "aid", path, number), field(event, "ts", path, number)
                if type(aid) is not int or type(ts) is not int:
                    raise _malformed(path, number, "'aid' and 'ts' must be integers")
                if kind in wanted:
                    sessions.append(session)
                    items.append(aid)
                    times.append(ts)
        return (
            np.array(sessions, dtype=np.int64),
            np.array(items, dtype=np.int64),
            np.array(times, dtype=np.int64),
        )


def _malformed(path: Path, number: int, reason: str) -> DataError:
    return DataError(
        f"{path.name} line {number} is not an OTTO session ({reason})",
        where=f"{path}:{number}",
        hint=f"expected lines such as {Otto.line_format}",
    )


SESSION_DATASETS: tuple[type[SessionLogDataset], ...] = (
    Yoochoose,
    Diginetica,
    RetailRocket,
    Otto,
)
