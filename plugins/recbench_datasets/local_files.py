"""Finding the file of a dataset that the user downloads by hand, and its fingerprint.

Some datasets cannot be downloaded by recbench (a login, a 7-Zip archive, no checksum to
verify): their official file is looked for under ``<data root>/<dataset id>/``, then
under the download root, in any of the names a copy may have (compressed or not).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from recbench.plugin import DataContext


def find_local_file(ctx: DataContext, dataset_id: str, names: Iterable[str]) -> Path | None:
    """The first of ``names`` that exists under the data root's, then the download root's,
    folder of ``dataset_id``; ``None`` when there is none."""
    roots = [ctx.data_root / dataset_id]
    if ctx.download_root != ctx.data_root:
        roots.append(ctx.download_root / dataset_id)
    candidates = list(names)
    for root in roots:
        for name in candidates:
            if (root / name).is_file():
                return root / name
    return None


def local_file_fingerprint(path: Path | None, file_name: str) -> str:
    """What changes when the file does: its name, size and modification time
    (``<file_name>:missing`` while there is none)."""
    if path is None:
        return f"{file_name}:missing"
    status = path.stat()
    return f"{path.name}:{status.st_size}:{status.st_mtime_ns}"
