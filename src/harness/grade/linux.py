"""The Linux process controls (prctl) the grading relies on; where the call is missing, each does nothing."""

import ctypes

PR_SET_PDEATHSIG = 1  # the signal a process gets when its parent ends
PR_SET_DUMPABLE = 4  # 0: no tracing, no /proc/<pid>/fd or memory access by other processes of the user
PR_SET_CHILD_SUBREAPER = 36  # orphans among the descendants become this process's children
PR_GET_CHILD_SUBREAPER = 37


def prctl(option: int, argument: int = 0) -> int:
    """prctl(option, argument): 0 on success, -1 on failure or where there is no such call."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, ctypes.c_ulong(argument), 0, 0, 0)
    except (OSError, AttributeError):
        return -1


def is_subreaper() -> bool:
    flag = ctypes.c_int(0)
    return prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag)) == 0 and flag.value == 1
