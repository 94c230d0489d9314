"""The studies of a tune: one Optuna study per model in one storage in the output folder.

The storage is an Optuna journal file (``DIR/studies.journal``; an RDB URL works too, for
workers on several machines). Each study records, in its user attributes, the
fingerprint of everything its trials depend on (the prepared data, the split and its
seed, the validation users, the protocol, the metric, the model's version, options and
space) and refuses to be continued with anything else; and its budget. A tune holds
``DIR/tune.lock`` while it runs: a second tune on the same folder is refused; the lock
goes with its process, even one killed with ``kill -9``, whose running trials are then
marked interrupted (not counted) when the study is resumed. A new study's first trial
runs the configured options (the model's defaults and the options fixed with ``-o``), so
a tune never ends below the configuration it started from on validation users, and its
report can say what tuning gained over it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import optuna
from optuna.trial import TrialState

from recbench.errors import ConfigError
from recbench.results import key_of
from recbench.tuning.budget import CONFIGURED, INTERRUPTED, counted_trials

JOURNAL_FILE = "studies.journal"
LOCK_FILE = "tune.lock"


def storage_url(out: Path, storage: str | None) -> str:
    """Where the studies are kept: ``storage`` (an RDB URL) or the journal in ``out``."""
    return storage or str(out / JOURNAL_FILE)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The study storage at ``url`` (a journal file path or an RDB URL).

    Raises
    ------
    ConfigError
        When it cannot be read (a damaged journal, a database that does not answer).
    """
    try:
        if "://" in url:
            return optuna.storages.RDBStorage(url)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url))
    except Exception as exc:
        raise ConfigError(
            f"the study storage cannot be read ({type(exc).__name__}: {exc})".splitlines()[0],
            where=url,
            hint="it is damaged: move it away to start over, or choose another --out",
        ) from None


def lock(out: Path) -> IO[str]:
    """Hold ``out/tune.lock`` (released when the file is closed or the process ends).

    Raises
    ------
    ConfigError
        When another tune holds it.
    """
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise ConfigError(
            f"the studies are locked by another recbench tune (process {holder})",
            where=str(out),
            hint="wait for it to finish, or choose another --out",
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def fingerprint(setup: Mapping[str, Any]) -> str:
    """The key of a study's ``setup`` (what its trials depend on)."""
    return key_of(setup)


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    setup: Mapping[str, Any],
    *,
    seed: int,
    pruning: bool,
    where: str,
    earlier_setup: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """The study ``name`` (created when new) with a seeded TPE sampler and a median
    pruner (none without ``pruning``); refuses one made with another ``setup``.

    ``earlier_setup`` is the same setup as an older recbench recorded it: a study made
    with it is continued, its recorded setup upgraded to ``setup``.

    Raises
    ------
    ConfigError
        When the stored study's fingerprint differs from ``setup``'s, naming what differs.
    """
    wanted = fingerprint(setup)
    try:
        try:  # loading first: creating an existing study still writes to a journal
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=sampler(seed), pruner=pruner(pruning)
            )
        except KeyError:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                direction="maximize",
                sampler=sampler(seed),
                pruner=pruner(pruning),
                load_if_exists=True,
            )
    except Exception as exc:
        raise ConfigError(
            f"the study '{name}' cannot be opened ({type(exc).__name__}: {exc})".splitlines()[0],
            where=where,
            hint="the storage is damaged: move it away to start over, or choose another --out",
        ) from None
    stored = study.user_attrs.get("fingerprint")
    upgraded = earlier_setup is not None and stored == fingerprint(earlier_setup)
    if stored is None or upgraded:
        study.set_user_attr("fingerprint", wanted)
        study.set_user_attr("setup", dict(setup))
    elif stored != wanted:
        before = study.user_attrs.get("setup", {})
        changed = sorted(k for k in set(before) | set(setup) if before.get(k) != setup.get(k))
        raise ConfigError(
            f"the study '{name}' belongs to another tune (different {', '.join(changed)})",
            where=where,
            hint="rerun with the same dataset, split, seed, validation users, protocol, "
            "metric and options to continue it, or choose another --out (studies are never mixed)",
        )
    return study


def stored_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The study ``name`` in ``storage``; ``None`` when no tune started it (a stopped
    tune, say, before reaching that model)."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def sampler(seed: int) -> optuna.samplers.BaseSampler:
    """A TPE sampler seeded with ``seed`` (a few random trials first)."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def pruner(pruning: bool = True) -> optuna.pruners.BasePruner:
    """Median pruning on the per-epoch validation values, after 3 trials and 2 epochs;
    without ``pruning``, none (every trial runs until its own early stopping)."""
    if not pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


def mark_interrupted(study: optuna.Study) -> int:
    """Mark the trials a killed tune left running as failed and interrupted (they do
    not count towards the budget); call only while holding the lock. Returns how many."""
    storage = study._storage  # the public Study API cannot fail a trial it did not ask for
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(stale)


def start_from_configured(study: optuna.Study, params: Mapping[str, Any]) -> None:
    """Queue the configured options as the next trial of a ``study`` that has no trial
    counting towards its budget and none queued (``params``: those of them the space can
    suggest; the objective gives the others their configured values,
    :func:`recbench.tuning.space.suggest`); call only while holding the lock."""
    if counted_trials(study) or study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return
    study.enqueue_trial(dict(params), user_attrs={CONFIGURED: True})
