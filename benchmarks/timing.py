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


def serve_torch(answer):
    """The child side of a JsonChild that runs PyTorch: greets with torch's version (null when it
    is not installed), then prints answer(request line) as one JSON line per request."""
    import json
    import sys
    try:
        import torch
    except ImportError:
        print(json.dumps(None), flush=True)
        return
    print(json.dumps(torch.__version__), flush=True)
    for line in sys.stdin:
        print(json.dumps(answer(line)), flush=True)


class JsonChild:
    """A helper process spoken to one line at a time: each request line gets one JSON line back.
    Its first line is its greeting (e.g. a library version, or null). Benchmarks run PyTorch in
    one, asked for blocks of steps between their own, so both sides see the same load."""

    def __init__(self, cmd, env=None):
        import json
        import subprocess
        self._json = json
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.version = json.loads(self.proc.stdout.readline() or "null")

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
