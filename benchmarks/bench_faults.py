"""Fault injection: a run killed with SIGKILL at random moments, then resumed, must end
with the same results as a run that was never interrupted.

Run on purpose (it is not part of the test suite; about 20 s a trial on one core)::

    python benchmarks/bench_faults.py --trials 20
    python benchmarks/bench_faults.py --trials 5 --models pop,lstm --options lstm.epochs=1

What it does: two clean runs of ``--models`` on ``--dataset`` (export off) through the
command line, timed (their results must be equal); then, for each trial, a fresh run directory and a fresh data cache,
and up to ``--kills`` invocations of the same command with ``--resume``, each killed with
SIGKILL (its whole process group) after a random delay drawn uniformly from zero to the
shorter clean run's duration (an invocation that finishes first is not killed); then a last
``--resume`` that is left to finish. The trial passes when that last invocation exits
with status 0 and

* every cell's metric means equal the clean run's (same cells, same values, exactly), and
* ``report.md`` equals the clean run's once the lines that must differ are removed: the
  command lines (another ``--out``, ``--resume``) and the Timing and serving-latency
  sections (wall-clock times).

Prints one line per trial and a summary; exits with status 1 when a trial failed (its
run directory is kept and named). ``--seed`` makes the kill delays repeatable.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Report sections whose content is wall-clock time.
TIMED_SECTIONS = ("## Timing", "## Serving latency", "## Latency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3, help="kills per trial, at most")
    parser.add_argument("--models", default="pop,itemknn,lstm")
    parser.add_argument("--options", default="lstm.epochs=2", help="comma-separated -o values")
    parser.add_argument("--dataset", default="synthetic:tiny")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill delays")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary one")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="recbench-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "recbench.cli", "run", "--models", args.models]
    for option in filter(None, args.options.split(",")):
        command += ["-o", option]
    command += ["--dataset", args.dataset, "--no-export", "--quiet"]

    durations, outcomes = [], []
    for attempt in (1, 2):  # twice: the comparison itself must find two clean runs equal
        clean = workdir / f"clean-{attempt}"
        shutil.rmtree(clean, ignore_errors=True)
        started = time.perf_counter()
        finished = _invoke(command, clean, workdir / f"clean-{attempt}-cache", resume=False)
        durations.append(time.perf_counter() - started)
        if finished.returncode != 0:
            print(f"the clean run failed:\n{finished.stderr}", file=sys.stderr)
            return 1
        outcomes.append(_outcome(clean))
    expected, duration = outcomes[0], min(durations)
    if (problem := _difference(expected, outcomes[1])) is not None:
        print(f"two clean runs differ: {problem}", file=sys.stderr)
        return 1
    print(f"clean runs: {duration:.1f} s, {len(expected[0])} cells, equal ({workdir})")

    failures, kills_total = [], 0
    for trial in range(1, args.trials + 1):
        out, cache = workdir / f"trial-{trial}", workdir / f"trial-{trial}-cache"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        delays, problem = [], None
        for _ in range(args.kills):
            delay = rng.uniform(0.0, duration)
            killed, problem = _invoke_and_kill(command, out, cache, delay)
            if not killed:
                break  # it finished (or failed) before the kill
            delays.append(delay)
        kills_total += len(delays)
        if problem is None:
            last = _invoke(command, out, cache, resume=True)
            if last.returncode != 0:
                problem = f"the last resume exited with {last.returncode}: {last.stderr.strip()}"
            else:
                problem = _difference(expected, _outcome(out))
        kills = ", ".join(f"{d:.1f} s" for d in delays) or "none (finished first)"
        print(f"trial {trial}: killed at {kills}: {'EQUAL' if problem is None else problem}")
        if problem is None:
            shutil.rmtree(out)
            shutil.rmtree(cache, ignore_errors=True)
        else:
            failures.append(out)
    print(
        f"{args.trials} trials, {kills_total} kills: "
        + ("every final result equals the clean run's" if not failures else "")
        + (f"{len(failures)} differ (kept: {', '.join(map(str, failures))})" if failures else "")
    )
    return 1 if failures else 0


def _environment(cache: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment["RECBENCH_CACHE"] = str(cache)
    environment.setdefault("RECBENCH_OFFLINE", "1")
    return environment


def _invoke(command: list[str], out: Path, cache: Path, *, resume: bool) -> Any:
    return subprocess.run(
        [*command, "--out", str(out), *(["--resume"] if resume else [])],
        env=_environment(cache),
        capture_output=True,
        text=True,
        check=False,
    )


def _invoke_and_kill(
    command: list[str], out: Path, cache: Path, delay: float
) -> tuple[bool, str | None]:
    """Start ``command --resume`` and SIGKILL it after ``delay`` s: whether it was
    killed, and what went wrong when it ended first with another status than 0."""
    process = subprocess.Popen(
        [*command, "--out", str(out), "--resume"],
        env=_environment(cache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True, None
    finally:
        assert process.stderr is not None
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
    if process.returncode != 0:
        return False, f"an invocation exited with {process.returncode}: {stderr.strip()}"
    return False, None


def _outcome(out: Path) -> tuple[dict[str, dict[str, float]], str]:
    """Every cell's metric means, and the report without the lines that must differ."""
    means = {}
    for path in sorted((out / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        if cell.get("status") != "ok":
            means[path.stem] = {"status": cell.get("status")}
            continue
        means[path.stem] = {name: entry["mean"] for name, entry in cell["metrics"].items()}
    return means, _comparable_report((out / "report.md").read_text())


def _comparable_report(report: str) -> str:
    lines, skipping = [], False
    for line in report.splitlines():
        if line.startswith("## "):
            skipping = line.startswith(TIMED_SECTIONS)
        if skipping or line.startswith("- Command:") or "invocation" in line:
            continue
        lines.append(line)
    return "\n".join(lines)


def _difference(expected: tuple[dict, str], actual: tuple[dict, str]) -> str | None:
    (expected_means, expected_report), (means, report) = expected, actual
    if set(means) != set(expected_means):
        return f"other cells: {sorted(set(means) ^ set(expected_means))}"
    changed = [name for name in means if means[name] != expected_means[name]]
    if changed:
        return f"other metrics in {', '.join(changed)}"
    if report != expected_report:
        first = next(
            (a, b)
            for a, b in itertools.zip_longest(
                report.splitlines(), expected_report.splitlines(), fillvalue=""
            )
            if a != b
        )
        return f"another report (first difference: {first[0]!r} instead of {first[1]!r})"
    return None


if __name__ == "__main__":
    sys.exit(main())
