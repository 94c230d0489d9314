"""The ``recbench`` command line: ``run``, ``check``, ``export``, ``report``, ``compare``,
``list``, ``show``, ``plugins`` and plugin commands.

User mistakes print one line (``recbench: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.table import Table

from recbench.config.run_config import (
    DEFAULT_CUTOFFS,
    DEFAULT_PROTOCOLS,
    RunConfig,
    load_config_file,
)
from recbench.errors import ConfigError, RecbenchError
from recbench.registry import Registry
from recbench.report import plugin_listing, plugin_options

KIND_OF_LIST = {"models": "model", "losses": "loss", "datasets": "dataset", "metrics": "metric"}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are RecbenchErrors (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message, where=self.prog, hint=f"see '{self.prog} --help'")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _int_csv(flag: str):
    def parse(text: str) -> list[int]:
        try:
            return [int(part) for part in _csv(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} takes comma-separated integers, got '{text}'"
            ) from None

    return parse


def _positive_int(flag: str):
    def parse(text: str) -> int:
        if not text.strip().isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{flag} takes a positive integer, got '{text}'")
        return int(text)

    return parse


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``run`` and ``check`` share: protocols, seeds, cutoffs, options, config."""
    parser.add_argument(
        "--protocols",
        type=_csv,
        default=None,
        help="half-split,iterative,last-item (default: half-split,iterative)",
    )
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds", type=_int_csv("--seeds"), default=None, help="comma-separated seeds (default: 0)"
    )
    seeds.add_argument(
        "--n-seeds",
        type=_positive_int("--n-seeds"),
        default=None,
        metavar="N",
        help="seeds 0..N-1; each seed re-splits the users and re-trains every model",
    )
    parser.add_argument(
        "--cutoffs",
        type=_int_csv("--cutoffs"),
        default=None,
        help="list lengths k (default: 10,20)",
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="set an option, e.g. -o split.test=0.2 (repeatable); several values of a "
        "model option run one cell each: -o moc.mixtures=1,2,4,8",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="a TOML file holding any of these settings (flags win over it)",
    )


def build_parser(registry: Registry | None = None) -> argparse.ArgumentParser:
    """The argument parser; plugins of ``registry`` may add sub-commands to it."""
    from recbench.version import __version__

    parser = _Parser(prog="recbench", description="Benchmark sequence-based recommenders.")
    parser.add_argument("--version", action="version", version=f"recbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="train and evaluate models on a dataset, then write a report")
    run.add_argument(
        "--models", type=_csv, default=None, help="comma-separated model ids, e.g. pop,lstm"
    )
    run.add_argument(
        "--dataset",
        default=None,
        help="dataset id (ml-100k, ml1m, file:PATH, synthetic:small, ...)",
    )
    _add_data_arguments(run)
    run.add_argument(
        "--metrics", type=_csv, default=None, help="metric ids (default: all registered)"
    )
    run.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    run.add_argument(
        "--order-check",
        default=None,
        metavar="MODEL",
        help="train this model again on order-shuffled sequences (first seed) to show "
        "whether order matters: auto (default: the first sequence model), a model, or off",
    )
    run.add_argument("--out", type=Path, help="run directory (default: runs/<date>-<dataset>)")
    run.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="continue an existing run directory, skipping finished cells",
    )
    run.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    run.add_argument(
        "--threads",
        type=_positive_int("--threads"),
        default=None,
        metavar="N",
        help="CPU threads torch uses (torch.set_num_threads; recorded in environment.json)",
    )
    run.add_argument(
        "--jobs",
        type=_positive_int("--jobs"),
        default=None,
        metavar="N",
        help="fit N (model, seed) cells at once in worker processes, splitting the CPU "
        "threads between them (default: 1, one after another); see docs/scale.md",
    )
    run.add_argument(
        "--executor",
        default=None,
        metavar="NAME",
        help="local (default: this machine) or ray (each fit a Ray task; needs recbench[ray])",
    )
    run.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="the Ray cluster to join with --executor ray: HOST:PORT, ray://HOST:10001 or "
        "auto (default: start a local Ray for the run)",
    )
    run.add_argument(
        "--no-export",
        action="store_true",
        default=None,
        help="skip the ONNX export and latency measurement of the trained models",
    )

    check = sub.add_parser(
        "check",
        help="load, preprocess and split a dataset as a run would; print its statistics "
        "and every warning; train nothing",
        description="Prepare DATASET as 'recbench run' would (loading, preprocessing, the "
        "derived-data cache), check it against the cutoffs and split it for every seed, then "
        "print the statistics, the splits and every warning about the data. Exit status 0 "
        "when the data is usable (warnings included), 2 on an error.",
    )
    check.add_argument(
        "dataset", nargs="?", default=None, metavar="DATASET", help="as --dataset of 'run'"
    )
    _add_data_arguments(check)
    check.add_argument("--quiet", action="store_true", default=None, help="no progress bars")

    export = sub.add_parser(
        "export",
        help="export the trained models of a run to ONNX and measure their latency",
        description="Train the run's models again with its stored configuration and seeds "
        "(a run keeps no model objects), export each neural model's one-step cell to ONNX, "
        "check parity with torch and time every runtime; nothing is evaluated again. "
        "Without --models, only models without a latency record are done.",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument(
        "--models", type=_csv, default=None, help="only these models of the run (always redone)"
    )
    export.add_argument(
        "--force", action="store_true", help="redo models that already have a latency record"
    )
    export.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="export.KEY=VALUE",
        help="an export option, e.g. -o export.repeats=2000 -o export.threads=1,2 (repeatable)",
    )
    export.add_argument("--quiet", action="store_true", help="no progress bars")

    report = sub.add_parser("report", help="render the markdown report of a run directory")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument(
        "-o", "--output", help="where to write it (default: RUN_DIR/report.md; '-' for stdout)"
    )

    compare = sub.add_parser(
        "compare",
        help="compare two run directories metric by metric; exit status 1 on a regression",
        description="For every (model, protocol, metric) of both runs, the ratio B / A of "
        "the means over seeds, marked '+' (worse by more than the factor, in the metric's "
        "direction), '-' (better), '~' (within), 'x' (failed in B), '!' (not compared). "
        "Exits with status 1 when anything regressed, 0 otherwise.",
    )
    compare.add_argument("run_a", type=Path, metavar="RUN_A", help="the baseline run")
    compare.add_argument("run_b", type=Path, metavar="RUN_B", help="the run compared with it")
    compare.add_argument(
        "--factor",
        type=float,
        default=None,
        help="a change counts when B / A leaves [1/factor, factor] (default: 1.05)",
    )
    compare.add_argument(
        "--metrics",
        type=_csv,
        default=(),
        help="only these metrics: names (sps@10) or ids for every cutoff (sps)",
    )
    compare.add_argument(
        "--protocol", type=_csv, default=(), help="only these protocols (comma-separated)"
    )
    compare.add_argument(
        "--only-changed", action="store_true", help="leave out the rows within the factor"
    )

    _add_tune_parser(sub)

    listing = sub.add_parser("list", help="list registered models, losses, datasets and metrics")
    listing.add_argument("kind", nargs="?", choices=sorted(KIND_OF_LIST), help="only this kind")
    plugin_options.add_parser(sub)
    plugin_listing.add_parser(sub)
    if registry is not None:
        registry.add_commands(sub)
    return parser


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill PID``, a scheduler stopping a job) stops a command as Ctrl-C
    does: what is finished is kept and the outputs are written. It is also the way to
    stop a command started in the background of a non-interactive shell, which ignores
    SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    console = Console()
    errors = Console(stderr=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    with _terminate_as_interrupt():
        return _main(argv, console, errors)


def _main(argv: list[str], console: Console, errors: Console) -> int:
    try:
        from recbench.api import load_registry
        from recbench.config.settings import Settings

        settings = Settings.from_environ()
        registry = None
        if argv and argv[0] not in ("-h", "--help", "--version", "report", "compare"):
            registry = load_registry(settings)
        parser = build_parser(registry)
        if registry is not None:
            for failure in registry.failures:
                errors.print(
                    f"recbench: warning: {failure.one_line()}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "run":
            return _run(args, settings, registry, argv, console)
        if args.command == "check":
            return _check(args, settings, registry, console)
        if args.command == "tune":
            return _tune(args, settings, registry, console)
        if args.command == "report":
            return _report(args, console)
        if args.command == "compare":
            return _compare(args)
        if args.command == "export":
            return _export(args, settings, registry, console)
        if args.command == "list":
            return _list(args, registry, console)
        if args.command == "show":
            return plugin_options.run(args, registry, console)
        if args.command == "plugins":
            return plugin_listing.run(args, registry, console)
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 2
        return int(handler(args) or 0)
    except RecbenchError as exc:
        errors.print(
            f"recbench: error: {exc.one_line()}", highlight=False, markup=False, soft_wrap=True
        )
        return exc.exit_code
    except KeyboardInterrupt:
        kept = (
            "finished trials are kept and tuned.toml and report.md name the unfinished "
            "studies (rerun the same command to continue them)"
            if argv[:1] == ["tune"]
            else "finished cells are kept (rerun with --resume)"
        )
        errors.print(f"recbench: interrupted; {kept}", highlight=False, soft_wrap=True)
        return 130


def _merged(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of ``args`` over those of its ``--config`` file: a flag that was given
    wins, a setting of the file fills in the others (absent from both: not in the result).
    ``--models`` may choose some of the file's models: the file's options of the others
    are then left out (``recbench run --config tuned.toml --models lstm``)."""
    merged = dict(load_config_file(args.config)) if args.config else {}
    chosen = getattr(args, "models", None)
    if chosen is not None and merged.get("options"):
        left_out = set(merged.get("models", ())) - set(chosen)
        merged["options"] = {k: v for k, v in merged["options"].items() if k not in left_out}
    given = {
        "models": getattr(args, "models", None),
        "dataset": args.dataset,
        "protocols": args.protocols,
        "seeds": list(range(args.n_seeds)) if args.n_seeds else args.seeds,
        "metrics": getattr(args, "metrics", None),
        "cutoffs": args.cutoffs,
        "device": getattr(args, "device", None),
        "order_check": getattr(args, "order_check", None),
        "out": getattr(args, "out", None),
        "resume": getattr(args, "resume", None),
        "quiet": args.quiet,
        "no_export": getattr(args, "no_export", None),
        "jobs": getattr(args, "jobs", None),
        "executor": getattr(args, "executor", None),
        "ray_address": getattr(args, "ray_address", None),
    }
    merged.update({key: value for key, value in given.items() if value is not None})
    return merged


def _run_config(merged: dict[str, Any], overrides: list[str]) -> RunConfig:
    """The :class:`RunConfig` of merged settings (defaults where they are silent), with
    the ``-o`` ``overrides`` applied."""
    return RunConfig(
        models=tuple(merged.get("models", ())),
        dataset=str(merged.get("dataset") or ""),
        protocols=tuple(merged.get("protocols", DEFAULT_PROTOCOLS)),
        seeds=tuple(merged.get("seeds", (0,))),
        metrics=tuple(merged.get("metrics", ())),
        cutoffs=tuple(merged.get("cutoffs", DEFAULT_CUTOFFS)),
        options={k: dict(v) for k, v in dict(merged.get("options", {})).items()},
        device=str(merged.get("device", "auto")),
        order_check=str(merged.get("order_check", "auto")),
    ).with_overrides(overrides)


def _run(args: argparse.Namespace, settings, registry, argv: list[str], console: Console) -> int:
    from recbench.api import default_run_path, run

    merged = _merged(args)
    if not merged.get("models"):
        raise ConfigError(
            "no model given",
            where="recbench run",
            hint="pass --models, e.g. --models pop, or set models in the --config file",
        )

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    config = _run_config(merged, [])
    tuning = dict(merged.get("tuning") or {})
    if tuning and args.config:  # the study folder is relative to the tuned.toml
        tuning["study"] = str((args.config.parent / str(tuning.get("study", "."))).resolve())
    if tuning:  # --models may run some of the tuned models only
        tuning["models"] = [m for m in tuning.get("models", []) if m in config.models]
        short = dict(tuning.get("unfinished", {}))
        tuning["unfinished"] = {m: used for m, used in short.items() if m in config.models}
    out = Path(str(merged["out"])) if merged.get("out") else default_run_path(config.dataset)
    no_export = ["export.enabled=false"] if merged.get("no_export") else []
    result = run(
        models=config.models,
        dataset=config.dataset,
        protocols=config.protocols,
        seeds=config.seeds,
        metrics=config.metrics,
        cutoffs=config.cutoffs,
        options=config.options,
        overrides=[*args.option, *no_export],
        device=config.device,
        order_check=config.order_check,
        out=out,
        resume=bool(merged.get("resume")),
        quiet=bool(merged.get("quiet")),
        settings=settings,
        registry=registry,
        command=["recbench", *argv],
        jobs=int(merged.get("jobs", 1)),
        executor=str(merged.get("executor", "local")),
        ray_address=merged.get("ray_address"),
        tuning=tuning or None,
    )
    _print_summary(result, console)
    console.print(f"Report: {result.path / 'report.md'}", highlight=False)
    return 0


def _add_tune_parser(sub: Any) -> None:
    """``recbench tune``: the same budget for every model, on validation users only."""
    tune = sub.add_parser(
        "tune",
        help="tune models' options with the same budget each, on validation users only; "
        "writes tuned.toml for 'recbench run --config'",
    )
    tune.add_argument("--models", type=_csv, required=True, help="model ids, e.g. pop,lstm")
    tune.add_argument("--dataset", required=True, help="dataset id (as for recbench run)")
    budget = tune.add_mutually_exclusive_group()
    budget.add_argument(
        "--trials", type=int, default=None, metavar="N", help="trials per model (default: 20)"
    )
    budget.add_argument(
        "--budget", default=None, metavar="TIME", help="trial time per model, e.g. 30m or 2h"
    )
    tune.add_argument("--metric", default="mrr@20", help="validation metric (default: mrr@20)")
    tune.add_argument(
        "--protocol", default="iterative", help="protocol tuned for (default: iterative)"
    )
    tune.add_argument(
        "--jobs", type=_positive_int("--jobs"), default=1, metavar="N", help="worker processes"
    )
    tune.add_argument("--seed", type=int, default=0, help="split and sampler seed (default: 0)")
    tune.add_argument(
        "--validation-users",
        type=float,
        default=None,
        metavar="N",
        help="validation users: a fraction of the non-test users or a count (default: 0.2, "
        "at least 200)",
    )
    tune.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="an RDB URL for the studies (default: a journal file in --out)",
    )
    tune.add_argument(
        "--defaults-only",
        type=_csv,
        default=[],
        metavar="MODELS",
        help="models run once with their defaults (needed for a model without a search "
        "space; a model with one is then not tuned)",
    )
    tune.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="fix an option (a model option is then not tuned), e.g. -o split.test=0.2",
    )
    tune.add_argument(
        "--no-pruning",
        dest="pruning",
        action="store_false",
        help="run every trial to its end (default: median pruning on per-epoch validation)",
    )
    tune.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    tune.add_argument("--out", type=Path, required=True, help="folder of the studies")
    tune.add_argument("--quiet", action="store_true", help="no progress bars or trial lines")


def _tune(args: argparse.Namespace, settings, registry, console: Console) -> int:
    from recbench.api import tune

    if args.trials is not None and args.trials < 1:
        raise ConfigError(
            f"--trials must be at least 1, got {args.trials}",
            where="--trials",
            hint="pass --trials 30 (trials per model)",
        )
    out = tune(
        args.models,
        args.dataset,
        out=args.out,
        trials=args.trials,
        budget=args.budget,
        metric=args.metric,
        protocol=args.protocol,
        jobs=args.jobs,
        seed=args.seed,
        validation_users=args.validation_users,
        storage=args.storage,
        overrides=args.option,
        defaults_only=args.defaults_only,
        pruning=args.pruning,
        device=args.device,
        quiet=args.quiet,
        settings=settings,
        registry=registry,
    )
    console.print(f"Tuned options: {out / 'tuned.toml'}", highlight=False)
    console.print(f"Study report: {out / 'report.md'}", highlight=False)
    return 0


def _check(args: argparse.Namespace, settings, registry, console: Console) -> int:
    from recbench.progress import Progress
    from recbench.report.sections import dataset_statistics_rows
    from recbench.runner.check import check_dataset

    merged = _merged(args)
    config = _run_config(merged, args.option)  # its models are checked, not trained
    result = check_dataset(
        config,
        registry=registry,
        settings=settings,
        progress=Progress(quiet=bool(merged.get("quiet"))),
    )
    data = result.data
    table = Table(title=f"{data.name} ({data.dataset_id})", title_justify="left")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for name, value in dataset_statistics_rows(data.statistics):
        table.add_row(name, value)
    console.print(table)
    preprocessing = ", ".join(f"{k}={v}" for k, v in data.preprocessing.items())
    console.print(f"Preprocessing: {preprocessing}", highlight=False, markup=False, soft_wrap=True)
    for split in result.splits:
        counts = split.fields.get("split", {})
        sizes = ", ".join(
            f"{key.replace('_', ' ')} {value:,}"
            for key, value in counts.items()
            if key.endswith(("_users", "_events"))
        )
        policies = split.fields.get("policies", {})
        shown = "".join(
            f"; {key}={_on_off(value) if isinstance(value, bool) else value}"
            for key, value in policies.items()
        )
        console.print(
            f"Split (seed {split.seed}, {result.task}): training on {split.training}; "
            f"{sizes}{shown}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if result.warnings:
        console.print(f"{len(result.warnings)} warning(s) about the data:", highlight=False)
        for warning in result.warnings:
            console.print(f"- {warning}", highlight=False, markup=False, soft_wrap=True)
    else:
        console.print("No warnings about the data.", highlight=False)
    return 0


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _print_summary(result, console: Console) -> None:
    from recbench.report.render import console_table

    frame = result.to_dataframe()
    ok = frame[frame["status"] == "ok"]
    failed = frame[frame["status"] != "ok"]
    if not ok.empty:
        console.print(console_table(result.path, ok, result.model_labels()))
    for model, protocol in dict.fromkeys(zip(failed["model"], failed["protocol"], strict=True)):
        console.print(
            f"[red]failed:[/red] {escape_markup(model)} ({protocol}) — see the report",
            highlight=False,
        )


def _export(args: argparse.Namespace, settings, registry, console: Console) -> int:
    from recbench.api import export

    for option in args.option:
        if not option.strip().startswith("export."):
            raise ConfigError(
                f"'{option}' is not an export option",
                where="recbench export -o",
                hint="write export.KEY=VALUE, e.g. -o export.repeats=2000",
            )
    if not args.force and not args.models and not _unexported(args.run_dir):
        console.print(
            f"Nothing to export: every finished model of {args.run_dir} already has a "
            "latency record; --force re-exports and re-times them (--models M: only M).",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return 0
    result = export(
        args.run_dir,
        models=args.models or (),
        force=args.force,
        overrides=args.option,
        quiet=args.quiet,
        settings=settings,
        registry=registry,
    )
    console.print(f"Report: {result.path / 'report.md'}", highlight=False)
    return 0


def _unexported(run_path: Path) -> list[tuple[str, int]]:
    """The (model label, seed) pairs of a run that finished but have no latency record."""
    from recbench.results import RunDirectory
    from recbench.serve.latency import record_path
    from recbench.tasks.ranking.order_check import is_ablation

    run_dir = RunDirectory.open(run_path)
    finished = {
        (str(cell["model_label"]), int(cell["seed"]))
        for cell in run_dir.cells()
        if cell.get("status") == "ok" and not is_ablation(cell)
    }
    return sorted(
        (label, seed)
        for label, seed in finished
        if not record_path(run_dir.path, label, seed).is_file()
    )


def _report(args: argparse.Namespace, console: Console) -> int:
    from recbench.api import write_report
    from recbench.report.render import render
    from recbench.results import RunDirectory

    run_dir = RunDirectory.open(args.run_dir)
    if args.output == "-":
        sys.stdout.write(render(run_dir))
        return 0
    target = Path(args.output) if args.output else run_dir.path / "report.md"
    try:
        write_report(run_dir, target)
    except OSError as exc:
        raise ConfigError(f"cannot write the report ({exc.strerror})", where=str(target)) from None
    console.print(f"Report: {target}", highlight=False)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from recbench.api import compare
    from recbench.report.compare import DEFAULT_FACTOR

    comparison = compare(
        args.run_a,
        args.run_b,
        factor=DEFAULT_FACTOR if args.factor is None else args.factor,
        metrics=args.metrics,
        protocols=args.protocol,
    )
    if comparison.setup_differences:
        Console(stderr=True).print(
            "recbench: warning: the runs differ in what they measure on ("
            + "; ".join(comparison.setup_differences)
            + "): their metrics are not comparable",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    sys.stdout.write(comparison.to_markdown(only_changed=args.only_changed))
    return 1 if comparison.regressed else 0


def _list(args: argparse.Namespace, registry, console: Console) -> int:
    kinds = [KIND_OF_LIST[args.kind]] if args.kind else list(KIND_OF_LIST.values())
    for kind in kinds:
        table = Table(
            title=next(k for k, v in KIND_OF_LIST.items() if v == kind), title_justify="left"
        )
        for column in ("id", "aliases", "summary", "from"):
            table.add_column(column, no_wrap=column in ("id", "from"))
        for info in sorted(registry.all(kind), key=lambda info: info.id):
            table.add_row(
                info.id,
                ", ".join(info.aliases),
                info.summary,
                f"{info.distribution} {info.distribution_version}",
            )
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
