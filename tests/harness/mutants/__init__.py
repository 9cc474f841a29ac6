"""Tests of the graded tests, one file per level: each deliberately broken implementation (a mutant) fails a
named graded test, with a message that names the mistake.

Graded test functions take the code under test as plain arguments, so they are called here directly with each
mutant in place of the student's code. Instructor-only (tests/harness/): the switchboards are complete answers.
"""

from functools import partial

import pytest

SMALL = dict(block_out_channels=(16, 32), norm_num_groups=8)  # fast stand-ins for a student's model


def small(cls):
    return partial(cls, **SMALL)


def caught(mutant, graded_test, reason: str, **params):
    """A row of a table of model mutants: `graded_test` (given `params`) fails on `mutant`, its message matching
    `reason`."""
    return pytest.param(mutant, graded_test, params, reason, id=f"{mutant.__name__}-{graded_test.__name__}")
