"""Session click logs (YOOCHOOSE, DIGINETICA, RetailRocket) read from small files in
their official formats, and the session-based temporal split by days."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from recbench_datasets.sessions import (
    Diginetica,
    Otto,
    OttoOptions,
    RetailRocket,
    RetailRocketOptions,
    SessionLogOptions,
    Yoochoose,
)

import recbench
from recbench.data.interactions import Sequences
from recbench.data.prepare import DataContext
from recbench.data.splits import SplitOptions, make_split
from recbench.errors import ConfigError, DataError

DAY = 86_400


def context(root: Path) -> DataContext:
    return DataContext(data_root=root, download_root=root, cache_root=root / "cache", offline=True)


def write(path: Path, text: str, compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def unix(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


YOOCHOOSE_LINES = """\
1,2014-04-07T10:51:09.277Z,214536502,0
1,2014-04-07T10:54:09.868Z,214536500,0
1,2014-04-07T10:54:09.120Z,214536506,0
2,2014-04-07T13:56:37.614Z,214662742,S
3,2014-04-06T11:26:24.127Z,214821275,2053
3,2014-04-06T11:28:54.654Z,214821275,2053
"""


@pytest.mark.parametrize("compress", [False, True])
def test_yoochoose_reads_the_official_clicks_file(tmp_path, compress):
    write(tmp_path / "yoochoose" / "yoochoose-clicks.dat", YOOCHOOSE_LINES, compress)
    events = Yoochoose(SessionLogOptions()).load(context(tmp_path))
    # Session 2 has one click and is dropped; session 1's two clicks in the same second
    # come in millisecond order (.120 before .868), not file order.
    assert events.user.tolist() == [1, 1, 1, 3, 3]
    assert events.item.tolist() == [214536502, 214536506, 214536500, 214821275, 214821275]
    assert events.timestamp.tolist() == [
        unix("2014-04-07T10:51:09"),
        unix("2014-04-07T10:54:09"),
        unix("2014-04-07T10:54:09"),
        unix("2014-04-06T11:26:24"),
        unix("2014-04-06T11:28:54"),
    ]


def test_diginetica_reads_the_official_item_views_file(tmp_path):
    write(
        tmp_path / "diginetica" / "train-item-views.csv",
        "sessionId;userId;itemId;timeframe;eventdate\n"
        "1;;81766;526309;2016-05-09\n"
        "1;;31331;1031018;2016-05-09\n"
        "1;;32118;243569;2016-05-09\n"
        "2;;9654;75848;2016-05-09\n"
        "3;5;33043;1211800;2016-05-10\n"
        "3;5;32118;29;2016-05-10\n",
    )
    events = Diginetica(SessionLogOptions()).load(context(tmp_path))
    # Ordered by the time within the session (timeframe, in milliseconds).
    assert events.user.tolist() == [1, 1, 1, 3, 3]
    assert events.item.tolist() == [32118, 81766, 31331, 32118, 33043]
    may9, may10 = unix("2016-05-09T00:00:00"), unix("2016-05-10T00:00:00")
    assert events.timestamp.tolist() == [may9 + 243, may9 + 526, may9 + 1031, may10, may10 + 1211]


@pytest.mark.parametrize(
    "header",
    [
        "sessionId;userId;itemId;timeframe;eventdate",
        "session_id;user_id;item_id;timeframe;eventdate",
    ],
)
def test_diginetica_accepts_both_header_spellings_and_na_users(tmp_path, header):
    write(
        tmp_path / "diginetica" / "train-item-views.csv",
        f"{header}\n"
        "1;NA;81766;526309;2016-05-09\n"
        "1;NA;31331;1031018;2016-05-09\n"
        "3;5;33043;1211800;2016-05-10\n"
        "3;NA;32118;29;2016-05-10\n",
        compress=True,
    )
    events = Diginetica(SessionLogOptions()).load(context(tmp_path))
    assert events.user.tolist() == [1, 1, 3, 3]
    assert events.item.tolist() == [81766, 31331, 32118, 33043]


def test_diginetica_with_another_header_names_both_spellings(tmp_path):
    write(
        tmp_path / "diginetica" / "train-item-views.csv",
        "session;user;item;timeframe;eventdate\n1;;81766;526309;2016-05-09\n",
    )
    with pytest.raises(DataError) as error:
        Diginetica(SessionLogOptions()).load(context(tmp_path))
    assert "sessionId;userId;itemId" in error.value.hint
    assert "session_id;user_id;item_id" in error.value.hint


def test_retailrocket_cuts_visitor_views_into_sessions(tmp_path):
    start = 1_433_221_332_000
    minute = 60_000
    lines = [
        "timestamp,visitorid,event,itemid,transactionid",
        f"{start},7,view,100,",
        f"{start + 10 * minute},7,addtocart,100,",
        f"{start + 35 * minute},7,view,101,",  # 25 minutes after the cart: same session
        f"{start + 90 * minute},7,view,102,",  # 55 minutes later: a new session
        f"{start + 95 * minute},7,view,103,",
        f"{start + 96 * minute},7,transaction,103,4000",
        f"{start + 5 * minute},8,view,100,",
        f"{start + 6 * minute},8,view,104,",
        f"{start + 7 * minute},9,view,100,",  # a single view: dropped
    ]
    write(tmp_path / "retailrocket" / "events.csv", "\n".join(lines) + "\n")
    events = RetailRocket(RetailRocketOptions()).load(context(tmp_path))
    sessions = events.user.tolist()
    assert events.item.tolist() == [100, 101, 102, 103, 100, 104]
    assert sessions[0] == sessions[1] != sessions[2] == sessions[3] != sessions[4] == sessions[5]
    assert len(set(sessions)) == 3
    # A longer allowed pause joins the visitor's two sessions.
    joined = RetailRocket(RetailRocketOptions(session_gap_minutes=60)).load(context(tmp_path))
    assert len(set(joined.user.tolist())) == 2


def test_a_missing_file_says_where_to_get_it_and_where_to_put_it(tmp_path):
    for dataset, name, source in (
        (Yoochoose(SessionLogOptions()), "yoochoose-clicks.dat", "recsys"),
        (Diginetica(SessionLogOptions()), "train-item-views.csv", "codalab"),
        (RetailRocket(RetailRocketOptions()), "events.csv", "kaggle"),
        (Otto(OttoOptions()), "train.jsonl", "kaggle"),
    ):
        assert dataset.fingerprint(context(tmp_path)).endswith("missing")
        with pytest.raises(DataError) as error:
            dataset.load(context(tmp_path))
        assert name in error.value.what and "cannot download" in error.value.what
        assert str(tmp_path / dataset.id / name) in error.value.hint
        assert source in error.value.hint.lower()


def test_a_malformed_file_is_a_data_error_naming_the_format(tmp_path):
    write(tmp_path / "yoochoose" / "yoochoose-clicks.dat", "1,yesterday,5,0\n1,today,6,0\n")
    with pytest.raises(DataError, match="official yoochoose") as error:
        Yoochoose(SessionLogOptions()).load(context(tmp_path))
    assert "session,timestamp,item,category" in error.value.hint
    write(tmp_path / "diginetica" / "train-item-views.csv", "a;b\n1;2\n")
    with pytest.raises(DataError, match="official diginetica"):
        Diginetica(SessionLogOptions()).load(context(tmp_path))


# -- the session-based temporal split ------------------------------------------------


def sessions(rows: list[tuple[list[int], int]], n_items: int) -> Sequences:
    """Sessions given as (items, day of their events)."""
    lengths = [len(items) for items, _ in rows]
    return Sequences(
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.array([i for items, _ in rows for i in items], dtype=np.int64),
        users=np.arange(len(rows), dtype=np.int64),
        n_items=n_items,
        timestamps=np.array(
            [day * DAY + 60 * k for items, day in rows for k in range(len(items))], dtype=np.int64
        ),
    )


def items_of(part: Sequences) -> list[list[int]]:
    return [part.sequence(row).tolist() for row in range(len(part))]


def test_day_split_holds_out_the_last_days_sessions():
    data = sessions(
        [
            ([1, 2, 3], 0),
            ([2, 4], 1),
            ([3, 2], 2),  # validation: ends within the day before the test day
            ([1, 4, 5], 3),  # test: 5 never occurs in training and is removed
            ([5, 1], 3),  # test: only [1] is left, too short, dropped
            ([2, 1], 3),
        ],
        n_items=6,
    )
    split = make_split(data, SplitOptions(method="temporal", test_days=1, valid_days=1), 0)
    assert split.method == "temporal"
    assert items_of(split.train) == [[1, 2, 3], [2, 4]]
    assert items_of(split.valid) == [[3, 2]]
    assert items_of(split.test) == [[1, 4], [2, 1]]
    assert split.test.users.tolist() == [3, 5]


def test_day_split_keeps_only_items_seen_in_training():
    data = sessions(
        [([1, 2, 3], 0), ([2, 4], 1), ([1, 2, 4], 5), ([5, 1, 2], 9), ([6, 2, 3], 9)], n_items=6
    )
    split = make_split(data, SplitOptions(method="temporal", test_days=1), 0)
    assert items_of(split.train) == [[1, 2, 3], [2, 4], [1, 2, 4]]
    assert items_of(split.valid) == []
    assert items_of(split.test) == [[1, 2], [2, 3]]
    # The timestamps follow the kept events.
    assert split.test.timestamps.tolist() == [
        9 * DAY + 60,
        9 * DAY + 120,
        9 * DAY + 60,
        9 * DAY + 120,
    ]
    with_valid = make_split(data, SplitOptions(method="temporal", test_days=1, valid_days=4), 0)
    assert items_of(with_valid.train) == [[1, 2, 3], [2, 4]]
    assert items_of(with_valid.valid) == [[1, 2, 4]]


def test_day_split_options_are_checked():
    with pytest.raises(ConfigError, match="temporal split, not 'users'"):
        SplitOptions(test_days=1)
    with pytest.raises(ConfigError, match="valid_days needs test_days"):
        SplitOptions(method="temporal", valid_days=1)
    with pytest.raises(ConfigError, match="negative"):
        SplitOptions(method="temporal", test_days=-1)
    data = sessions([([1, 2], 0), ([1, 2], 0)], n_items=2)
    with pytest.raises(ConfigError, match="leaves the training set empty"):
        make_split(data, SplitOptions(method="temporal", test_days=1), 0)


def test_run_on_a_session_log_with_the_day_split(settings, tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    first_day = datetime(2014, 4, 1, tzinfo=timezone.utc).timestamp()
    for session in range(1, 401):  # evenly over six days
        start = first_day + session * 6 * DAY / 400
        first = int(rng.integers(1, 40))
        for step in range(int(rng.integers(2, 7))):
            item = 1000 + (first + step) % 40  # items follow each other in order
            stamp = datetime.fromtimestamp(start + step * 1.5, timezone.utc)
            lines.append(f"{session},{stamp.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z,{item},0")
    write(settings.data_root / "yoochoose" / "yoochoose-clicks.dat", "\n".join(lines) + "\n")
    result = recbench.run(
        models=["sknn", "sr", "pop"],
        dataset="yoochoose",
        metrics=["sps"],
        cutoffs=[5],
        overrides=["split.method=temporal", "split.test_days=1", "split.valid_days=1"],
        out=tmp_path / "run",
        settings=settings,
    )
    frame = result.to_dataframe()
    assert (frame["status"] == "ok").all()
    iterative = frame[frame["protocol"] == "iterative"].set_index("model")["mean"]
    assert iterative["sr"] > 0.9 and iterative["sknn"] > iterative["pop"]
