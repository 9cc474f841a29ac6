"""The suite's one reference retraining (test_reference_runs.py) starts as soon as the tests are collected, in a
child process of one thread, and trains on one core while the other tests run on the other: they too get one thread
(and so do the processes they start), since two threads each on two cores make torch's evaluations several times
slower (measured: Level 6's guided samples took 151 s instead of 19 s)."""

import os

import pytest
import torch

from tests.harness.helpers import BackgroundRun

RETRAINING_TEST = "test_a_fresh_reference_run_matches_its_recording"
_runs = pytest.StashKey[dict]()


def pytest_collection_finish(session):
    configs = [item.callspec.params["config"] for item in session.items if item.originalname == RETRAINING_TEST]
    session.config.stash[_runs] = {config: BackgroundRun(config) for config in configs}
    if configs:
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


def pytest_sessionfinish(session):
    for run in session.config.stash.get(_runs, {}).values():
        run.stop()


@pytest.fixture
def fresh_reference_run(request) -> BackgroundRun:
    """The background training of the config this test is parametrised with."""
    return request.config.stash[_runs][request.node.callspec.params["config"]]
