"""The one timing rule of the benchmark scripts: the median of many calls after a warm-up."""
import statistics
import time


def median_seconds(fn, reps, warmup=1, clock=time.perf_counter, batches=None):
    """Median seconds of `reps` calls of fn() (fn(i % batches) when batches is given, so the calls
    walk over that many minibatches), after `warmup` calls. clock: time.perf_counter (wall) or
    time.thread_time (this thread's CPU time, steadier on a shared machine)."""
    call = (lambda i: fn()) if batches is None else (lambda i: fn(i % batches))
    for i in range(warmup):
        call(i)
    times = []
    for i in range(reps):
        t0 = clock()
        call(i)
        times.append(clock() - t0)
    return statistics.median(times)
