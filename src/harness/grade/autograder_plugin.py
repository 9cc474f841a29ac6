"""Loaded into the autograder's pytest child (`-p src.harness.grade.autograder_plugin`); see
src/harness/instructor/autograder.py.

Once collection has read the tests (the hidden ones included) and before any student code is imported:
- drops to an unprivileged user when the driver asks (KATA_DROP_TO=uid:gid), so the hidden tests, the
  reference and the results folder, all readable by root only, cannot be read or written by the submission;
- forgets the tests' source lines (linecache), so `inspect.getsource` cannot read them back from memory;
- blocks imports of the reference (src.solution) and, unless the instructor allows it, of ready-made
  networks (diffusers): KATA_BLOCKED_IMPORTS, comma-separated.
"""

import importlib.abc
import linecache
import os

import pytest


class _Blocked(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = tuple(names)

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ImportError(f"the autograder does not allow importing {fullname} in your code")
        return None


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    import sys

    drop = os.environ.pop("KATA_DROP_TO", "")
    if drop and os.geteuid() == 0:
        uid, gid = (int(v) for v in drop.split(":"))
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    linecache.clearcache()
    blocked = [name for name in os.environ.pop("KATA_BLOCKED_IMPORTS", "").split(",") if name]
    if blocked:
        sys.meta_path.insert(0, _Blocked(blocked))
