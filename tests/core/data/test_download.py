"""Downloads (file:// and a loopback HTTP server) and safe zip extraction."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from recbench.data.download import fetch, safe_extract, sha256_file
from recbench.errors import DataError
from recbench.progress import Progress, ProgressBar

PAYLOAD = b"1\t2\t5\t881250949\n" * 5000


class RecordingProgress(Progress):
    """Remembers every bar and how far it advanced."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.bars: list[dict] = []

    @contextlib.contextmanager
    def task(
        self, description: str, total: float | None = None, *, bytes: bool = False
    ) -> Iterator[ProgressBar]:
        bar = {"description": description, "total": total, "bytes": bytes, "advanced": 0}
        self.bars.append(bar)

        class Recorder(ProgressBar):
            def advance(self, amount: float = 1) -> None:
                bar["advanced"] += amount

        yield Recorder(None, None)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "server" / "ratings.zip"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


@pytest.fixture
def http_url(source: Path) -> Iterator[str]:
    """The URL of ``source`` on an HTTP server bound to 127.0.0.1."""
    handler = functools.partial(QuietHandler, directory=str(source.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{source.name}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_over_http_streams_with_a_bytes_progress_bar(http_url: str, tmp_path: Path) -> None:
    destination = tmp_path / "data" / "ml-test" / "ratings.zip"
    progress = RecordingProgress()
    result = fetch(http_url, destination, sha256=digest(PAYLOAD), progress=progress, offline=False)
    assert result == destination
    assert destination.read_bytes() == PAYLOAD
    assert leftovers(destination.parent) == []  # the temporary file was renamed
    (bar,) = progress.bars
    assert bar["bytes"] is True
    assert bar["total"] == len(PAYLOAD)
    assert bar["advanced"] == len(PAYLOAD)
    assert "ratings.zip" in bar["description"]


def test_fetch_from_a_file_url(source: Path, tmp_path: Path) -> None:
    destination = tmp_path / "out" / "copy.zip"
    fetch(
        source.as_uri(),
        destination,
        sha256=digest(PAYLOAD),
        progress=Progress.silent(),
        offline=False,
    )
    assert sha256_file(destination) == digest(PAYLOAD)


def test_checksum_mismatch_names_file_hashes_and_what_to_do(source: Path, tmp_path: Path) -> None:
    destination = tmp_path / "out" / "ratings.zip"
    wrong = "0" * 64
    with pytest.raises(DataError) as caught:
        fetch(source.as_uri(), destination, sha256=wrong, progress=Progress.silent(), offline=False)
    message = str(caught.value)
    assert "ratings.zip" in message and wrong in message and digest(PAYLOAD) in message
    assert "delete it and retry" in message and source.as_uri() in message
    assert "\n" not in message
    assert not destination.exists()
    assert leftovers(destination.parent) == []  # no half-written file left behind


def test_a_verified_file_already_there_is_not_downloaded_again(tmp_path: Path) -> None:
    destination = tmp_path / "ratings.zip"
    destination.write_bytes(PAYLOAD)
    unreachable = "http://127.0.0.1:9/never-contacted.zip"
    assert fetch(
        unreachable, destination, sha256=digest(PAYLOAD), progress=Progress.silent(), offline=True
    )


def test_a_file_already_there_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    destination = tmp_path / "ratings.zip"
    destination.write_bytes(b"not the official bytes")
    with pytest.raises(DataError, match="expected " + digest(PAYLOAD)):
        fetch(
            "http://127.0.0.1:9/x.zip",
            destination,
            sha256=digest(PAYLOAD),
            progress=Progress.silent(),
            offline=True,
        )


def test_offline_names_the_url_and_where_to_put_the_file(tmp_path: Path) -> None:
    destination = tmp_path / "data" / "ml-1m" / "ml-1m.zip"
    url = "https://files.example.org/ml-1m.zip"
    with pytest.raises(DataError) as caught:
        fetch(url, destination, sha256="0" * 64, progress=Progress.silent(), offline=True)
    message = caught.value.one_line()
    assert url in message and str(destination) in message and "\n" not in message
    assert not destination.parent.exists()  # nothing was created


def test_network_failure_names_the_url_and_where_to_put_the_file(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-1m.zip"
    destination = tmp_path / "ml-1m.zip"
    with pytest.raises(DataError) as caught:
        fetch(url, destination, sha256="0" * 64, progress=Progress.silent(), offline=False)
    message = caught.value.one_line()
    assert f"downloading {url} failed" in message and str(destination) in message
    assert leftovers(tmp_path) == []


def test_http_error_is_a_data_error(http_url: str, tmp_path: Path) -> None:
    missing = http_url.replace("ratings.zip", "absent.zip")
    with pytest.raises(DataError, match=r"absent\.zip failed"):
        fetch(
            missing,
            tmp_path / "absent.zip",
            sha256="0" * 64,
            progress=Progress.silent(),
            offline=False,
        )


# -- safe_extract ------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_extracts_selected_members_under_their_folder(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "ml.zip",
        {"ml-1m/ratings.dat": b"1::2::3::4\n", "ml-1m/README": b"readme", "ml-1m/big": b"x"},
    )
    destination = tmp_path / "out"
    assert safe_extract(archive, destination, members=["ml-1m/ratings.dat"]) == destination
    assert (destination / "ml-1m" / "ratings.dat").read_bytes() == b"1::2::3::4\n"
    assert sorted(p.name for p in (destination / "ml-1m").iterdir()) == ["ratings.dat"]
    assert leftovers(destination) == []


def test_extracts_everything_by_default(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "a.zip", {"top/a.txt": b"a", "top/sub/b.txt": b"b", "c.txt": b"c"}
    )
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "sub" / "b.txt").read_bytes() == b"b"
    assert (tmp_path / "out" / "c.txt").read_bytes() == b"c"


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        ("../evil.txt", "'..'"),
        ("top/../../evil.txt", "'..'"),
        ("/etc/evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
    ],
)
def test_refuses_members_that_escape(tmp_path: Path, member: str, problem: str) -> None:
    archive = make_zip(tmp_path / "bad.zip", {"ok/a.txt": b"a", member: b"evil"})
    destination = tmp_path / "out"
    with pytest.raises(DataError, match=problem) as caught:
        safe_extract(archive, destination)
    assert "bad.zip" in str(caught.value)
    assert not (tmp_path / "evil.txt").exists()
    assert not destination.exists() or list(destination.iterdir()) == []  # nothing unpacked


def test_refuses_symbolic_links(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        link = zipfile.ZipInfo("top/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")


def test_missing_member_and_bad_zip_are_data_errors(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"ml-1m/movies.dat": b"x"})
    with pytest.raises(DataError, match=r"no member 'ml-1m/ratings\.dat'"):
        safe_extract(archive, tmp_path / "out", members=["ml-1m/ratings.dat"])
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"<html>not a zip</html>")
    with pytest.raises(DataError, match="not a valid zip"):
        safe_extract(broken, tmp_path / "out")


def test_an_interrupted_extraction_leaves_no_folder_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_zip(tmp_path / "a.zip", {"ml-1m/ratings.dat": b"1", "ml-1m/users.dat": b"2"})
    real_extract = zipfile.ZipFile.extract
    calls = []

    def failing_extract(
        self: zipfile.ZipFile, member: object, path: object = None, pwd: object = None
    ) -> str:
        calls.append(member)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_extract(self, member, path, pwd)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "extract", failing_extract)
    destination = tmp_path / "out"
    with pytest.raises(DataError, match="No space left"):
        safe_extract(archive, destination)
    assert list(destination.iterdir()) == []  # neither the partial folder nor the staging one


def test_refuses_to_overwrite_an_existing_entry(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"ml-1m/ratings.dat": b"new"})
    (tmp_path / "out" / "ml-1m").mkdir(parents=True)
    (tmp_path / "out" / "ml-1m" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "ml-1m" / "notes.txt").read_text() == "mine"
