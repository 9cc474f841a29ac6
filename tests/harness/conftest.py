"""The suite's one reference retraining (test_reference_runs.py) starts as soon as the tests are collected, in a
child process of one thread, and trains on one core while the other tests run on the other: they too get one thread
(and so do the processes they start), since two threads each on two cores make torch's evaluations several times
slower (measured: Level 6's guided samples took 151 s instead of 19 s). The tests that mostly wait on child processes
of one thread (main.py runs, Gradescope gradings, the builds) run first, beside the retraining; once it has finished,
the tests left get every core back; the graded tests, whose evaluations gain most from it, run last (the retraining's
own test after them)."""

import os

import pytest
import torch

from tests.harness.helpers import BackgroundRun

RETRAINING_TEST = "test_a_fresh_reference_run_matches_its_recording"
# The files whose tests mostly wait on child processes of one thread: they leave the other core to the retraining.
BESIDE_THE_RETRAINING = tuple(f"tests/harness/{name}.py" for name in (
    "test_release", "test_cli", "test_new_level", "test_grading", "test_integrity", "test_points"))
_runs = pytest.StashKey[dict]()


def pytest_collection_modifyitems(items):
    if any(item.originalname == RETRAINING_TEST for item in items):
        items.sort(key=lambda item: (item.originalname == RETRAINING_TEST, "tests/graded/" in item.nodeid,
                                     item.nodeid.split("::")[0] not in BESIDE_THE_RETRAINING))


def pytest_collection_finish(session):
    configs = [item.callspec.params["config"] for item in session.items if item.originalname == RETRAINING_TEST]
    runs = session.config.stash[_runs] = {config: BackgroundRun(config) for config in configs}
    if runs:
        session.config.pluginmanager.register(CoresBackAfterTheRetraining(list(runs.values())))


class CoresBackAfterTheRetraining:
    """One thread for the tests (and the processes they start) while a retraining runs, every core after it."""

    def __init__(self, runs: list[BackgroundRun]):
        self.runs, self.threads, self.omp = runs, torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
        self.narrowed = True

    def pytest_runtest_setup(self, item):
        if self.narrowed and all(run.process.poll() is not None for run in self.runs):
            torch.set_num_threads(self.threads)
            if self.omp is None:
                os.environ.pop("OMP_NUM_THREADS")
            else:
                os.environ["OMP_NUM_THREADS"] = self.omp
            self.narrowed = False


def pytest_sessionfinish(session):
    for run in session.config.stash.get(_runs, {}).values():
        run.stop()


@pytest.fixture
def fresh_reference_run(request) -> BackgroundRun:
    """The background training of the config this test is parametrised with."""
    return request.config.stash[_runs][request.node.callspec.params["config"]]
