"""The pool of worker threads emitted into each compiled module, as LLVM IR over pthreads.

One pool per compiled module (Pool): the runtime
calls symcnn_pool_start once after loading the module and symcnn_pool_stop when the compiled
function is freed. Between regions the workers spin (up to about a millisecond, SPIN_TICKS,
yielding their core once the spin is long), then sleep on a condition variable.
A region publishes (body, args, bounds) under a new generation, wakes the workers, and then the
calling thread and the workers claim ranges one at a time until none is left; the caller returns
once all T are finished. Regions of one module run one at a time (a mutex around each), so
threads that call into the same module concurrently take turns instead of mixing their jobs. So the caller never waits for a worker that has not woken up yet (the
machine is busy): it runs that range itself. With no live workers (pool never started, pthread_create failed, a
forked child whose workers do not exist) every range runs on the calling thread.
"""
import sys

from llvmlite import ir

from . import irutil as U

MAX_WORKERS = 255  # pool capacity (threads besides the caller)
THREAD_NAME = "symcnn-pool"
# How long a thread spins before it sleeps: long enough to bridge a training step's serial stretches
# (a small classifier layer's forward and backward, 0.3-0.5 ms) and the Python between calls, since
# a sleeping thread's wake-up costs far more on a virtual machine (its idle core halts): with spins
# of 11 us (1024 polls at 11 ns) against 0.7 ms, the tutorial's LeNet steps took 1.08x the time,
# its batch-64 steps 1.2x, the zoo's batch-normalised network 1.06x (alternating rounds, 2 threads,
# benchmarks/bench_models.py setups). On a busy machine the spin yields (YIELD_AFTER; OpenMP
# runtimes spin 0.2 ms to 200 ms by default). On x86 the spin is timed by the time stamp counter (a constant rate,
# about the base clock: SPIN_TICKS is 0.5-1 ms); elsewhere it counts polls, whose spin hint takes
# 1-40 ns.
SPIN_TICKS = 1 << 21
SPIN = 1 << 16
# After this many polls a spinning thread yields its core at each poll (sched_yield): where the
# machine has more runnable threads than cores (other processes, several functions' pools, MPI
# ranks), they run instead of the spin; on an idle machine the call returns at once.
YIELD_AFTER = 1 << 10
BODY_TYPE = ir.FunctionType(ir.VoidType(), [U.PTR, U.I64, U.I64, U.I64])


class _Callee:
    """A body function pointer held in an (opaque) ptr value, as the callee of an indirect call."""

    function_type = BODY_TYPE

    def __init__(self, ptr):
        self.ptr, self.type = ptr, ptr.type

    def get_reference(self):
        return self.ptr.get_reference()


# -- the pool -----------------------------------------------------------------------------------

_SYNC = 256   # bytes reserved for a pthread_mutex_t / pthread_cond_t (glibc x86-64: 40 / 48)
_SIGSET = 256  # bytes reserved for a sigset_t (glibc: 128)
SIG_SETMASK = 2


def _spin_hint(module):
    """(intrinsic, args) telling the core it is in a spin-wait loop, for the target compiled for:
    x86 `pause`, AArch64 `yield` (hint #1); None elsewhere (the loop then just polls)."""
    from .target import current
    t = current()
    if t.x86:
        return U.declare(module, "llvm.x86.sse2.pause", ir.VoidType(), []), []
    if t.aarch64:
        return U.declare(module, "llvm.aarch64.hint", ir.VoidType(), [U.I32]), [ir.Constant(U.I32, 1)]
    return None


def _spin_clock(module):
    """llvm.readcyclecounter where it reads a counter user code may read at a constant rate (x86's
    time stamp counter); None elsewhere (on AArch64 it reads the cycle counter, which user code
    usually may not)."""
    from .target import current
    if current().x86:
        return U.declare(module, "llvm.readcyclecounter", U.I64, [])
    return None


class Pool:
    """The pool's module globals and functions (emitted once per module, on first use)."""

    @classmethod
    def get(cls, module, T):
        pool = getattr(module, "_symcnn_pool", None)
        if pool is None:
            pool = cls(module)
            module._symcnn_pool = pool
        # the pool is sized for the widest region of the module
        cur = pool.size.initializer.constant
        pool.size.initializer = ir.Constant(U.I64, max(cur, min(T, MAX_WORKERS + 1)))
        return pool

    def __init__(self, module):
        self.module = module
        I32, I64, P = U.I32, U.I64, U.PTR
        sync = ir.ArrayType(U.I64, _SYNC // 8)
        g = self._global
        # ticket and done are polled by spinning threads: each on its own cache line
        self.ticket = g("ticket", I64, 0, 64)     # generation << 32 | next unclaimed range
        self.done = g("done", I64, 0, 64)         # ranges of the current region finished
        self.job_fn = g("job_fn", P, None, 64)
        self.job_args = g("job_args", P, None)
        self.job_bounds = g("job_bounds", P, None)
        self.job_T = g("job_T", I64, 0)
        self.stop_flag = g("stop", I32, 0)
        self.mutex = g("mutex", sync, None, 64)
        self.region = g("region", sync, None, 64)   # held by the thread running a region
        self.cond_work = g("cond_work", sync, None, 64)
        self.cond_done = g("cond_done", sync, None, 64)
        self.sleepers = g("sleepers", I32, 0, 64)   # under the mutex
        self.waiting = g("waiting", I32, 0)         # under the mutex: the caller sleeps on cond_done
        self.workers = g("workers", I64, 0)
        self.pid = g("pid", I64, 0)
        self.inited = g("inited", I32, 0)
        self.base = g("base", I32, 0)
        self.handles = g("handles", ir.ArrayType(I64, MAX_WORKERS + 1), None, 64)
        self.size = g("size", I64, 1)
        self.size.global_constant = True
        d = lambda name, ret, args: U.declare(module, name, ret, args)  # noqa: E731
        self.lock = d("pthread_mutex_lock", I32, [P])
        self.unlock = d("pthread_mutex_unlock", I32, [P])
        self.wait = d("pthread_cond_wait", I32, [P, P])
        self.broadcast = d("pthread_cond_broadcast", I32, [P])
        self.signal = d("pthread_cond_signal", I32, [P])
        self.getpid = d("getpid", I32, [])
        self.sched_yield = d("sched_yield", I32, [])
        self.pause = _spin_hint(module)
        self.clock = _spin_clock(module)
        self.claim = self._emit_claim()
        self.worker = self._emit_worker()
        self.run = self._emit_run()
        self._emit_start()
        self._emit_stop()

    def _global(self, name, typ, init, align=None):
        gv = ir.GlobalVariable(self.module, typ, name=f"symcnn_pool.{name}")
        gv.linkage = "internal"
        gv.initializer = ir.Constant(typ, init)
        if align:
            gv.align = align
        return gv

    def _function(self, name, ret, args, internal=True):
        fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
        if internal:
            fn.linkage = "internal"
        fn.attributes.add("noinline")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        return fn, b

    # small pieces of IR
    def _load32(self, b, gv, ordering="acquire"):
        return b.load_atomic(gv, ordering, 4, typ=U.I32)

    def _my_pid(self, b):
        return b.sext(b.call(self.getpid, []), U.I64)

    def _spin_until(self, b, check, fail_name):
        """Poll check(b) -> (i1 done, value) for SPIN_TICKS of the time stamp counter (x86), else up
        to SPIN times. Returns (done_block, value phi in it, block reached when the spin ran out);
        the builder is left at the latter."""
        fn = b.function
        t0 = b.call(self.clock, []) if self.clock is not None else None
        start = b.block
        head = fn.append_basic_block(f"{fail_name}.spin")
        more = fn.append_basic_block(f"{fail_name}.more")
        done = fn.append_basic_block(f"{fail_name}.done")
        out = fn.append_basic_block(f"{fail_name}.slow")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(U.I64)
        i.add_incoming(U.i64(0), start)
        ok, val = check(b)
        b.cbranch(ok, done, more)
        b.position_at_end(more)
        if self.pause is not None:
            b.call(*self.pause)
        with b.if_then(b.icmp_signed(">=", i, U.i64(YIELD_AFTER)), likely=True):
            b.call(self.sched_yield, [])   # another thread of the machine that wants this core gets it
        nxt = b.add(i, U.i64(1))
        i.add_incoming(nxt, b.block)
        if self.clock is not None:
            going = b.icmp_unsigned("<", b.sub(b.call(self.clock, []), t0), U.i64(SPIN_TICKS))
        else:
            going = b.icmp_signed("<", nxt, U.i64(SPIN))
        b.cbranch(going, head, out)
        b.position_at_end(done)
        ph = b.phi(val.type)
        ph.add_incoming(val, head)
        b.position_at_end(out)
        return done, ph

    def _call_body(self, b, fn, args, bounds, t):
        at = lambda k: b.load(b.gep(bounds, [k], source_etype=U.I64), typ=U.I64)  # noqa: E731
        b.call(_Callee(fn), [args, t, at(t), at(b.add(t, U.i64(1)))])

    def _gen_of(self, b, ticket):
        return b.trunc(b.lshr(ticket, U.i64(32)), U.I32)

    def _emit_claim(self):
        """void claim(i32 gen): run unclaimed ranges of region `gen` until none is left.
        The ticket (gen << 32 | next range) is claimed by compare-and-swap, so a thread that
        wakes up late cannot take a range of a later region; the job fields it read before a
        successful swap are that region's (the caller rewrites them only once all its ranges
        are done, and a swap on an unclaimed range means they are not)."""
        fn, b = self._function("symcnn_pool_claim", ir.VoidType(), [U.I32])
        gen = fn.args[0]
        loop = fn.append_basic_block("claim")
        out = fn.append_basic_block("out")
        b.branch(loop)
        b.position_at_end(loop)
        ticket = b.load_atomic(self.ticket, "acquire", 8, typ=U.I64)
        idx = b.and_(ticket, U.i64(0xFFFFFFFF))
        T = b.load(self.job_T, typ=U.I64)
        live = b.and_(b.icmp_unsigned("==", self._gen_of(b, ticket), gen), b.icmp_signed("<", idx, T))
        take = fn.append_basic_block("take")
        b.cbranch(live, take, out)
        b.position_at_end(take)
        body = b.load(self.job_fn, typ=U.PTR)
        args = b.load(self.job_args, typ=U.PTR)
        bounds = b.load(self.job_bounds, typ=U.PTR)
        res = b.cmpxchg(self.ticket, ticket, b.add(ticket, U.i64(1)), "acq_rel", "acquire")
        run = fn.append_basic_block("run")
        b.cbranch(b.extract_value(res, 1), run, loop)
        b.position_at_end(run)
        self._call_body(b, body, args, bounds, idx)
        # release: the caller reads what this range wrote once it sees the count reach T
        old = b.atomic_rmw("add", self.done, U.i64(1), "acq_rel")
        with b.if_then(b.icmp_signed("==", b.add(old, U.i64(1)), T)):
            b.call(self.lock, [self.mutex])
            with b.if_then(b.icmp_unsigned("!=", b.load(self.waiting, typ=U.I32), ir.Constant(U.I32, 0))):
                b.call(self.signal, [self.cond_done])
            b.call(self.unlock, [self.mutex])
        b.branch(loop)
        b.position_at_end(out)
        b.ret_void()
        return fn

    def _emit_worker(self):
        """void *worker(void *id): wait for a new region, claim its ranges; until stopped."""
        fn, b = self._function("symcnn_pool_worker", U.PTR, [U.PTR])
        entry = b.block
        my0 = b.load(self.base, typ=U.I32)
        loop = fn.append_basic_block("loop")
        b.branch(loop)
        b.position_at_end(loop)
        my = b.phi(U.I32)
        my.add_incoming(my0, entry)

        def changed(b):
            g = self._gen_of(b, b.load_atomic(self.ticket, "acquire", 8, typ=U.I64))
            return b.icmp_unsigned("!=", g, my), g

        got, g_spin = self._spin_until(b, changed, "w")
        # no new region for a while: sleep until the caller broadcasts one
        b.call(self.lock, [self.mutex])
        b.store(b.add(b.load(self.sleepers, typ=U.I32), ir.Constant(U.I32, 1)), self.sleepers)
        wait_head = fn.append_basic_block("sleep")
        wait_body = fn.append_basic_block("sleep.wait")
        woke = fn.append_basic_block("woke")
        b.branch(wait_head)
        b.position_at_end(wait_head)
        g2 = self._gen_of(b, b.load_atomic(self.ticket, "acquire", 8, typ=U.I64))
        b.cbranch(b.icmp_unsigned("!=", g2, my), woke, wait_body)
        b.position_at_end(wait_body)
        b.call(self.wait, [self.cond_work, self.mutex])
        b.branch(wait_head)
        b.position_at_end(woke)
        b.store(b.sub(b.load(self.sleepers, typ=U.I32), ir.Constant(U.I32, 1)), self.sleepers)
        b.call(self.unlock, [self.mutex])
        b.branch(got)
        g_spin.add_incoming(g2, woke)
        b.position_at_end(got)
        stop = self._load32(b, self.stop_flag)
        with b.if_then(b.icmp_unsigned("!=", stop, ir.Constant(U.I32, 0)), likely=False):
            b.ret(ir.Constant(U.PTR, None))
        b.call(self.claim, [g_spin])
        my.add_incoming(g_spin, b.block)
        b.branch(loop)
        return fn

    def _publish(self, b):
        """Start a new region (its job fields stored already); returns its generation."""
        gen = b.add(self._gen_of(b, b.load_atomic(self.ticket, "monotonic", 8, typ=U.I64)), ir.Constant(U.I32, 1))
        b.store_atomic(U.i64(0), self.done, "monotonic", 8)
        # release: a thread that sees the new ticket sees the job
        b.store_atomic(b.shl(b.zext(gen, U.I64), U.i64(32)), self.ticket, "release", 8)
        return gen

    def _emit_run(self):
        """void run(body, args, bounds, T): the region; returns when every range is done."""
        fn, b = self._function("symcnn_pool_run", ir.VoidType(), [U.PTR, U.PTR, U.PTR, U.I64])
        body, args, bounds, T = fn.args
        check_pid = fn.append_basic_block("pid")
        serial = fn.append_basic_block("serial")
        pool = fn.append_basic_block("pool")
        nw = b.load(self.workers, typ=U.I64)
        b.cbranch(b.icmp_signed(">", nw, U.i64(0)), check_pid, serial)
        b.position_at_end(check_pid)
        # a forked child has the pool's memory but not its threads
        b.cbranch(b.icmp_signed("==", self._my_pid(b), b.load(self.pid, typ=U.I64)), pool, serial)
        b.position_at_end(serial)
        with U.for_range(b, T, name="t") as t:
            self._call_body(b, body, args, bounds, t)
        b.ret_void()
        b.position_at_end(pool)
        # one region at a time: the job fields, ticket and done count describe a single region,
        # so a second caller (another thread in the same module) waits for the first to finish
        b.call(self.lock, [self.region])
        b.store(body, self.job_fn)
        b.store(args, self.job_args)
        b.store(bounds, self.job_bounds)
        b.store(T, self.job_T)
        gen = self._publish(b)
        b.call(self.lock, [self.mutex])
        with b.if_then(b.icmp_unsigned("!=", b.load(self.sleepers, typ=U.I32), ir.Constant(U.I32, 0))):
            b.call(self.broadcast, [self.cond_work])
        b.call(self.unlock, [self.mutex])
        # this thread takes ranges too: all of them if no worker gets to run meanwhile
        b.call(self.claim, [gen])

        def finished(b):
            d = b.load_atomic(self.done, "acquire", 8, typ=U.I64)
            return b.icmp_signed("==", d, T), U.i64(0)

        done, done_phi = self._spin_until(b, finished, "c")
        b.call(self.lock, [self.mutex])
        b.store(ir.Constant(U.I32, 1), self.waiting)
        head = fn.append_basic_block("c.sleep")
        wait = fn.append_basic_block("c.wait")
        woke = fn.append_basic_block("c.woke")
        b.branch(head)
        b.position_at_end(head)
        all_done = b.icmp_signed("==", b.load_atomic(self.done, "acquire", 8, typ=U.I64), T)
        b.cbranch(all_done, woke, wait)
        b.position_at_end(wait)
        b.call(self.wait, [self.cond_done, self.mutex])
        b.branch(head)
        b.position_at_end(woke)
        b.store(ir.Constant(U.I32, 0), self.waiting)
        b.call(self.unlock, [self.mutex])
        b.branch(done)
        done_phi.add_incoming(U.i64(0), woke)
        b.position_at_end(done)
        b.call(self.unlock, [self.region])
        b.ret_void()
        return fn

    def _emit_start(self):
        """i64 symcnn_pool_start(i64 n): start the workers (n threads in all, counting the caller;
        n <= 0: as many as the widest region); returns the threads the pool has."""
        I32, I64, P = U.I32, U.I64, U.PTR
        m = self.module
        fn, b = self._function("symcnn_pool_start", I64, [I64], internal=False)
        n = fn.args[0]
        nw = b.load(self.workers, typ=I64)
        with b.if_then(b.icmp_signed(">", nw, U.i64(0))):
            b.ret(b.add(nw, U.i64(1)))
        size = b.load(self.size, typ=I64)
        want = b.select(b.icmp_signed("<=", n, U.i64(0)), size, U.smin(b, n, size))
        b.store(self._my_pid(b), self.pid)
        b.store(ir.Constant(I32, 0), self.stop_flag)
        b.store(ir.Constant(I32, 0), self.sleepers)
        b.store(ir.Constant(I32, 0), self.waiting)
        b.store(self._gen_of(b, b.load(self.ticket, typ=I64)), self.base)
        null = ir.Constant(P, None)
        # initialised once and never destroyed: a thread the interpreter abandoned at exit may
        # still be waiting on them (and glibc's pthread_cond_destroy waits for waiters)
        with b.if_then(b.icmp_unsigned("==", b.load(self.inited, typ=I32), ir.Constant(I32, 0))):
            b.call(U.declare(m, "pthread_mutex_init", I32, [P, P]), [self.mutex, null])
            b.call(U.declare(m, "pthread_mutex_init", I32, [P, P]), [self.region, null])
            cinit = U.declare(m, "pthread_cond_init", I32, [P, P])
            b.call(cinit, [self.cond_work, null])
            b.call(cinit, [self.cond_done, null])
            b.store(ir.Constant(I32, 1), self.inited)
        # workers block every signal, so the interpreter's handlers keep running on its own threads
        sigset = ir.ArrayType(U.I8, _SIGSET)
        with b.goto_entry_block():
            allsig = b.alloca(sigset)
            old = b.alloca(sigset)
        b.call(U.declare(m, "sigfillset", I32, [P]), [allsig])
        mask = U.declare(m, "pthread_sigmask", I32, [I32, P, P])
        b.call(mask, [ir.Constant(I32, SIG_SETMASK), allsig, old])
        create = U.declare(m, "pthread_create", I32, [P, P, P, P])
        head = fn.append_basic_block("create")
        body = fn.append_basic_block("create.body")
        ok = fn.append_basic_block("create.ok")
        out = fn.append_basic_block("create.end")
        pre = b.block
        b.branch(head)
        b.position_at_end(head)
        k = b.phi(I64)
        k.add_incoming(U.i64(1), pre)
        b.cbranch(b.icmp_signed("<", k, want), body, out)
        b.position_at_end(body)
        slot = b.gep(self.handles, [U.i64(0), k], source_etype=self.handles.value_type)
        rc = b.call(create, [slot, null, self.worker, b.inttoptr(k, P)])
        b.cbranch(b.icmp_signed("==", rc, ir.Constant(I32, 0)), ok, out)
        b.position_at_end(ok)
        if sys.platform.startswith("linux"):  # shows in /proc/<pid>/task/*/comm, top -H, gdb
            name = THREAD_NAME.encode() + b"\0"
            text = ir.GlobalVariable(m, ir.ArrayType(U.I8, len(name)), name="symcnn_pool.name")
            text.linkage = "internal"
            text.global_constant = True
            text.initializer = ir.Constant(ir.ArrayType(U.I8, len(name)), bytearray(name))
            setname = U.declare(m, "pthread_setname_np", I32, [I64, P])
            b.call(setname, [b.load(slot, typ=I64), text])
        b.store(k, self.workers)
        k.add_incoming(b.add(k, U.i64(1)), ok)
        b.branch(head)
        b.position_at_end(out)
        b.call(mask, [ir.Constant(I32, SIG_SETMASK), old, null])
        b.ret(b.add(b.load(self.workers, typ=I64), U.i64(1)))

    def _emit_stop(self):
        """void symcnn_pool_stop(): wake, stop and join the workers (no region may be running)."""
        I32, I64, P = U.I32, U.I64, U.PTR
        m = self.module
        fn, b = self._function("symcnn_pool_stop", ir.VoidType(), [], internal=False)
        nw = b.load(self.workers, typ=I64)
        with b.if_then(b.icmp_signed("<=", nw, U.i64(0))):
            b.ret_void()
        with b.if_then(b.icmp_signed("!=", self._my_pid(b), b.load(self.pid, typ=I64))):
            b.store(U.i64(0), self.workers)   # a forked child: the threads were the parent's
            b.ret_void()
        b.store_atomic(ir.Constant(I32, 1), self.stop_flag, "release", 4)
        b.store(U.i64(0), self.job_T)
        self._publish(b)
        b.call(self.lock, [self.mutex])
        b.call(self.broadcast, [self.cond_work])
        b.call(self.unlock, [self.mutex])
        join = U.declare(m, "pthread_join", I32, [I64, P])
        with U.for_range(b, b.add(nw, U.i64(1)), start=U.i64(1), name="k") as k:
            slot = b.gep(self.handles, [U.i64(0), k], source_etype=self.handles.value_type)
            b.call(join, [b.load(slot, typ=I64), ir.Constant(P, None)])
        b.store(U.i64(0), self.workers)
        b.ret_void()
