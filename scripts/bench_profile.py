"""Where the time goes: cProfile of one upload and of 1,000 captures, run in a child.

An upload sends its batches from worker threads, and ``cProfile`` sees only
the thread it was enabled in. ``threading.setprofile`` installs a hook that
each new thread calls first; the hook swaps itself for a ``cProfile.Profile``
of that thread, so every thread is profiled on its own and the tables merge
them. Times are wall time per thread, so they include waiting: for a job
(``SimpleQueue.get``: an idle worker), for the receiver's answer
(``recv_into``) and for the GIL. (A CPU-time clock per thread would be
exact but costs a system call per profiled call, which swamps the figures.)
The same upload inline (``threads=False``, one batch at a time on the main
thread, as at interpreter exit) shows the work without that noise.
"""

from __future__ import annotations

__all__ = ["captures", "upload"]

_COMMON = """
import cProfile, os, pstats, sys, threading, time

def table(stats, key, limit=15):
    stats.sort_stats(key)
    lines = [f"  top {limit} by {key}: ncalls tottime cumtime function"]
    for func in stats.fcn_list[:limit]:
        _cc, calls, tottime, cumtime, _callers = stats.stats[func]
        path, line, name = func
        for marker in ("site-packages/", "python3.11/"):
            if marker in path:
                path = path.split(marker, 1)[1]
        where = name if path == "~" else f"{path}:{line}({name})"
        lines.append(f"  {calls:>9} {tottime:8.3f} {cumtime:8.3f}  {where}")
    return "\\n".join(lines)

def report(title, stats):
    print(title)
    print(table(stats, "cumulative"))
    print(table(stats, "tottime"))
"""

_UPLOAD = (
    _COMMON
    + """
import posthog.request
from luxonis_telemetry import upload

workers = []

def start_thread_profile(frame, event, arg):
    profiler = cProfile.Profile()
    workers.append(profiler)
    profiler.enable()  # replaces this hook for the rest of the thread

threading.setprofile(start_thread_profile)
main = cProfile.Profile()
cpu, started = time.process_time(), time.perf_counter()
main.enable()
result = upload(budget=3600, threads=__THREADS__)
main.disable()
threading.setprofile(None)
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
for thread in threading.enumerate():
    if thread is not threading.current_thread():
        thread.join(2)  # the senders end when the run closes; others may idle on
stats = pstats.Stats(main)
for profiler in workers:
    stats.add(profiler)
report(
    f"cProfile of upload(threads=__THREADS__): sent {result.sent}, pending {result.pending}, "
    f"{wall:.2f} s wall, {cpu:.2f} s CPU of the process under the profiler; "
    f"main thread and {len(workers)} other thread(s) merged",
    stats,
)
"""
)

_CAPTURES = (
    _COMMON
    + """
from luxonis_telemetry import Telemetry
props = __PROPS__
t = Telemetry("bench")
t.capture("warm", props)
profiler = cProfile.Profile()
started = time.perf_counter()
profiler.enable()
for _ in range(1000):
    t.capture("train.start", props)
profiler.disable()
report(
    f"cProfile of 1,000 capture() calls ({time.perf_counter() - started:.3f} s under the profiler)",
    pstats.Stats(profiler),
)
"""
)


def captures(properties: dict[str, object]) -> str:
    """The child code profiling 1,000 captures of ``properties``."""
    return _CAPTURES.replace("__PROPS__", repr(properties))


def upload(threads: bool) -> str:
    """The child code profiling one upload of the spool it is pointed at."""
    return _UPLOAD.replace("__THREADS__", repr(threads))
