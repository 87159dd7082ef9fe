"""Thread counts for processes that share the machine's cores (server workers, benchmark pools).

NumPy's BLAS, torch and ONNX Runtime each start one thread per core by default, so two solves
side by side on two cores run four busy threads: dual-space phasing then ran 2.8 times slower
than alone (40 trials of simulated columbite: 2.9 s against 1.05 s; with one thread each, 1.05 s
for both), and a time-budgeted search did a third of its trials. A process told its share
through the usual environment variables (read by the libraries when they load) runs as fast as
it would alone. (No cctbx or torch here: the server's front end imports this.)
"""
from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def thread_share(processes: int) -> int:
    """Threads for each of `processes` busy processes on this machine: at least one."""
    return max(1, usable_cores() // max(1, processes))


def shared_thread_env(processes: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default: this process's environment) for a child that is one of
    `processes` running at once: each thread variable set to the child's share, unless the
    user set it already."""
    out = dict(os.environ if env is None else env)
    share = str(thread_share(processes))
    for name in THREAD_VARIABLES:
        out.setdefault(name, share)
    return out


def share_cores_with_children(processes: int) -> None:
    """Sets this process's thread variables (those unset) to the share of `processes` children
    started afterwards (a spawn pool: each child loads the libraries afresh and reads them)."""
    os.environ.update(shared_thread_env(processes))
