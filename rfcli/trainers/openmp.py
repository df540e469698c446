"""A thread that waits while another trains gives back its OpenMP threads, unless the machine is
oversubscribed.

Each thread that runs torch CPU ops owns a team of OpenMP threads. GNU libgomp (what torch's Linux
builds ship) counts the threads of every team together, and once they outnumber the cores its
threads stop spinning between parallel regions and sleep in the kernel instead. A worker trains
each run on a thread of its own, so two teams are enough on 2 cores: the worker's own thread (it
loaded the models) and the training one, or a parked run's beside it. Measured on a quiet 2-core
machine, a LoRA step on a run's thread then took 1232 ms against 1108 ms on the thread that loaded
the model (elementwise ops 1.6 to 2x slower, matrix products 16%), and 1081 ms once the loading
thread's team was freed; in the SFT sweep, a run's later chunks took about 25% longer than its
first. `omp_pause_resource_all`, run on a thread, frees that thread's own team in libgomp (other
threads' teams are untouched), so the training thread spins as a lone PyTorch process does. The
worker's thread frees its team before each chunk it hands over, a run's thread as it parks; each
builds a new team on its next turn.

Spinning pays only with a core to spare: measured on 2 cores under a load average of 10 to 14 from
other processes, a later chunk of rf-tiny took 13 s with the parked teams freed against 0.6 s with
them kept (both timed side by side), since a spinning wait holds a core that a descheduled thread
needs.
So a team is freed only while the load average is below twice the core count, leaving libgomp's
own sleeping waits in place otherwise. Under another OpenMP runtime (LLVM's libomp, Intel's
libiomp5) pausing is process-wide, so nothing is done there.
"""

from __future__ import annotations

import ctypes
import functools
import os

OMP_PAUSE_SOFT = 1
LIBGOMP = "libgomp.so.1"


@functools.cache
def _loaded_libgomp() -> ctypes.CDLL | None:
    """libgomp if this process has already loaded it (through torch), else None; never loads it."""
    no_load = getattr(os, "RTLD_NOLOAD", None)
    if no_load is None:  # not Linux
        return None
    try:
        library = ctypes.CDLL(LIBGOMP, mode=no_load | os.RTLD_LAZY)
    except OSError:
        return None
    return library if hasattr(library, "omp_pause_resource_all") else None


def oversubscribed() -> bool:
    """More threads want to run than twice the cores: spinning waits would take turns from them."""
    return os.getloadavg()[0] >= 2 * (os.cpu_count() or 1)


def free_thread_team() -> bool:
    """Free the calling thread's OpenMP team (libgomp only); True when it was freed."""
    library = _loaded_libgomp()
    return library is not None and library.omp_pause_resource_all(OMP_PAUSE_SOFT) == 0


def release_idle_team() -> bool:
    """Called by a thread about to wait while another trains: free its team unless the machine is
    oversubscribed."""
    return not oversubscribed() and free_thread_team()
