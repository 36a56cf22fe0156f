"""Fixtures shared by several test files, and how ``make test`` spreads the files over the cores.

``make test`` runs ``pytest -n auto --dist loadfile`` (pytest-xdist): one worker process per
core, each running whole test files, so a file's module-scoped fixtures are built once. A plain
``pytest tests/test_x.py`` stays serial. Three things here make the parallel run shorter:

- **Shared fixtures.** A session-scoped fixture is built once per worker process. Files that use
  one (``trained_sample``) are sent to the same worker as one unit (:data:`SHARED`), so the
  fixture is built once per run, not once per worker.
- **Slowest files first.** Files are handed out in collection order; a long file started last
  would run alone on one core while the others idle. The workers collect the files named in
  :data:`SLOWEST` first (measured durations; a stale list costs balance, never correctness).
- **OpenMP threads that sleep.** LightGBM's OpenMP threads spin while they wait for work by
  default. When two workers (or another job) share two cores, the spinning threads take the
  cores from the ones with work: the 300-user training of ``test_cli_trust.py`` took 14.4-16.6 s
  with spinning and 5.9 s with ``OMP_WAIT_POLICY=PASSIVE`` (load 3, 2 cores). Set here, before
  anything loads OpenMP, unless the environment already says otherwise; child processes
  (the CLI tests, the demo) inherit it.

Nothing here changes what a test asserts, and nothing writes outside pytest's own temporary
folders: every test that writes uses ``tmp_path``/``tmp_path_factory`` (one folder per worker).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before any import that may load OpenMP

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "synthetic" / "sample"

#: test files (names) that share a session-scoped fixture -> the name of their one work unit
SHARED: dict[str, str] = {
    "test_learned_ranker.py": "trained_sample",
    "test_ranker_reorder.py": "trained_sample",
}

#: the slowest test files (names), slowest first, as measured in a parallel run (``-n 2``, 2 cores,
#: 2026-12-02: test_readme.py alone took 332 s, a quarter of the suite's test time, so it starts
#: first); each work unit of :data:`SHARED` counts as its slowest listed file
SLOWEST: tuple[str, ...] = (
    "test_readme.py",
    "test_demo.py",
    "test_learned_ranker.py",
    "test_demand.py",
    "test_evaluation_run.py",
    "test_push_trust.py",
    "test_lift.py",
    "test_push_parallel.py",
    "test_push_campaign.py",
    "test_broadcast.py",
    "test_training_worker.py",
    "test_recommender_reload.py",
    "test_fuzz.py",
    "test_monitor_stream.py",
    "test_incremental.py",
    "test_worker_load.py",
    "test_push_coverage.py",
    "test_monitor.py",
    "test_pipelines.py",
    "test_push_priorities.py",
    "test_cli_trust.py",
)


@pytest.fixture(scope="session")
def trained_sample():
    """The committed sample city validated and trained with the default configuration.

    Returns ``(model, validated)``: the :class:`~recsys.training.model.TrainedModel` and the
    :func:`recsys.schema.validate` result it was trained on. Tests must not change either (copy
    first, as ``test_ranker_reorder.py`` does): every file of its :data:`SHARED` unit reads them.
    """
    from recsys.schema import validate
    from recsys.training import train_model

    result = validate(data=str(SAMPLE))
    return train_model(result.users, result.items, result.events), result


def _unit(nodeid: str) -> str:
    """The work unit of a test: its file, or the shared unit its file belongs to."""
    path = nodeid.split("::", 1)[0]
    return SHARED.get(Path(path).name, path)


def _rank(nodeid: str) -> int:
    """Where a test's file stands in :data:`SLOWEST` (unlisted files after every listed one)."""
    name = Path(nodeid.split("::", 1)[0]).name
    group = SHARED.get(name)
    names = [n for n, g in SHARED.items() if g == group] if group else [name]
    ranks = [SLOWEST.index(n) for n in names if n in SLOWEST]
    return min(ranks) if ranks else len(SLOWEST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker: the slowest files first, the files of a shared unit together.

    Every worker collects the same order (the sort is stable and depends only on node ids),
    which xdist requires. A serial run keeps pytest's own order.
    """
    if not hasattr(config, "workerinput"):
        return
    items.sort(key=lambda item: (_rank(item.nodeid), _unit(item.nodeid)))


def pytest_configure(config: pytest.Config) -> None:
    """Register :class:`_XdistHooks` when pytest-xdist is active (its hooks are unknown otherwise)."""
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "recsys-xdist-scheduling")


class _XdistHooks:
    """The scheduler for ``--dist loadfile``; any other ``--dist`` keeps xdist's own."""

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        if config.getvalue("dist") != "loadfile":
            return None
        # here, not at the top: the module imports without pytest-xdist (a plain serial run)
        from xdist.scheduler import LoadFileScheduling

        class SharedFixtureScheduling(LoadFileScheduling):
            """``--dist loadfile``, with the files of a :data:`SHARED` unit on one worker, in collection order."""

            def __init__(self, config: pytest.Config, log=None) -> None:
                super().__init__(config, log)
                # xdist would otherwise re-sort the units by their number of tests, undoing SLOWEST
                config.option.loadscopereorder = False

            def _split_scope(self, nodeid: str) -> str:
                return _unit(nodeid)

        return SharedFixtureScheduling(config, log)
