"""CPU threads and OpenMP's wait policy from how busy the machine is when charrnn starts.

PyTorch's CPU kernels run on OpenMP threads. A thread that finishes its share of a kernel waits for
the others either by spinning (OpenMP's default: fast when every thread has a core of its own) or by
sleeping (`OMP_WAIT_POLICY=PASSIVE`: slower to wake, but it gives the core back). Measured on a
2-core bf16 CPU (`bench/threads.py`, 2x384 LSTM training step, 2 threads against 1): idle, spinning
gave 1.76x (fp32) and 1.49x (bf16) while sleeping gave 1.26x and 0.90x; beside one CPU-bound process,
spinning fell to 0.56x and 0.49x while sleeping held 0.95x and 0.87x. So on a busy machine charrnn
sleeps and also leaves the busy cores alone (threads = free cores); on an idle one it spins on all.

"Busy" is measured, not averaged: the load average lags by a minute (a run started right after
another would count its predecessor), so charrnn counts the tasks runnable right now
(/proc/loadavg's fourth field), a few times over 20 ms, less itself. OpenMP reads the policy once,
when torch loads, so `import charrnn` measures before it imports torch. This module never imports
torch.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from pathlib import Path

MAX_DEFAULT_THREADS = 8


def usable_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def runnable_others(
    loadavg: Path = Path("/proc/loadavg"), samples: int = 5, interval: float = 0.004
) -> int | None:
    """Tasks other than this one that are runnable now (median of a few readings); None without /proc."""
    counts = []
    for index in range(samples):
        try:
            running = loadavg.read_text(encoding="ascii").split()[3].split("/")[0]
        except (OSError, IndexError, UnicodeDecodeError):
            return None
        counts.append(max(int(running) - 1, 0))  # this process is running while it reads
        if index + 1 < samples:
            time.sleep(interval)
    return sorted(counts)[len(counts) // 2]


@functools.cache
def busy_at_start() -> int | None:
    """Other runnable tasks when charrnn was first imported (measured once per process)."""
    return runnable_others()


def wait_policy(environ: Mapping[str, str], busy: int | None) -> str | None:
    """The OMP_WAIT_POLICY to set, or None to leave OpenMP's default (or the user's choice) alone."""
    if "OMP_WAIT_POLICY" in environ or not busy:
        return None
    return "PASSIVE"


def default_threads(cores: int, busy: int | None) -> int:
    """Training threads when --threads is not given: the free cores, at most MAX_DEFAULT_THREADS."""
    return max(1, min(cores - (busy or 0), MAX_DEFAULT_THREADS))
