"""codegen.options: every setting of the backend that changes the code it emits, in one object.

`options` (the instance below) is read while a function is lowered and compiled, and hashed
(`options.key()`) into the key of every function entry of the compile cache, beside the graph,
the per-function instrumentation (mode='nanguard', 'boundscheck', 'profile': build options, see
build.graph_key), the target description and the hash of the packages' source (versioning: an
edited constant of a kernel is a new version). Change a setting by assigning an attribute
(`options.packed_gemm = False`, in tests `monkeypatch.setattr(options, "packed_gemm", False)`):
the cache then tells the two builds apart.

The target (config.target_cpu / target_features) and the thread count (config.num_threads) are
front-end settings the backend reads when it compiles; `target` and `threads` report them here so
that the key lists everything in one place.
"""


class Options:
    # LLVM's pipeline (the O-level). O1, and no loop unrolling or interleaving: the kernels block
    # their loops, vectorise their inner loops and keep their accumulators in registers by hand, so
    # what O2 adds (GVN, more inlining and loop passes) only costs compile time. On the zoo's and the
    # LSTM's steps O1 ran as fast as O2 (bench_models.py setups, 11-15 alternating rounds: 0.97-1.01
    # of O2's time; bench_ops.py, bench_lstm.py unchanged) and took 5 % less wall time to compile
    # cold (LeNet 0.99 -> 0.94 s, allconv 1.18 -> 1.12 s); O3 doubles the compile time and machine
    # code, unrolling and interleaving at O2 cost another 20 % of it. Vectorisation stays on (both
    # vectorisers run at any level here, see jit.optimize): the elementwise loops need it.
    speed_level = 1
    loop_unrolling = False
    loop_interleaving = False

    # Cut a function's module into parts compiled at the same time on the free cores, each part
    # shared by the modules holding it (jit.compile_module, codegen/split.py). The machine code
    # is the same; a LeNet train+validate+test cold compile takes about half the time.
    split_modules = True

    # With split_modules, the part holding the entry function (codegen/split.py) is compiled with
    # these settings: LLVM's O-level, straight-line (SLP) vectorisation, and its code generation
    # level (0-3). That part is mostly calls, shape checks and bookkeeping, and the largest part of
    # a training step, compiled on one core while the kernels' parts share the other. O1 without SLP
    # vectorisation (the loop vectoriser still runs on its elementwise loops and reductions) takes
    # 14-23 % less LLVM time on it (LeNet, cifar_deep) and ran its kernels as fast
    # (per-kernel profile, A/B). Code generation level 0 would cut its emission by 85 % but made
    # the kernels inlined into the entry function 2-5x slower.
    entry_speed_level = 1
    entry_slp_vectorization = False
    entry_codegen_level = 3

    # With split_modules, functions that two or more thread-pool jobs of a part call (the GEMM
    # micro-kernels a Winograd convolution and the dense layers' products share) make parts of
    # their own: compiled once for the training step and its validation function, and at the same
    # time as their callers. LLVM then optimises the callers without seeing those functions' bodies
    # (codegen/split.py); no measurable change in speed (benchmarks/bench_models.py).
    split_libraries = True

    # With split_modules, the parts of a module whose kernels are finished go to the idle compile
    # helper while the rest of the module is still being emitted (codegen/early_parts.py).
    early_parts = True

    # Strided forward convolutions by the kernel with vectors over filters (microkernels/kvec.py)
    # where kernels/conv_forward.strided_images picks it; False: always the direct kernel on the
    # phase-split images (kernels/conv_phases.py).
    kvec_forward = True

    # Padded unit-stride forwards with few channels on small images by that kernel too, where
    # kernels/conv_forward.small_image_kvec picks it; False: Winograd or the direct kernel there.
    kvec_small_images = True

    # The entry function's scalar loops (elementwise, reductions, copies) are vectorised by LLVM;
    # unrolling them as well doubled the machine code and compile time of a LeNet train step for no
    # measurable speed. Hand-vectorised kernels keep LLVM's unrolling (see build._tag_scalar_loops).
    entry_unroll = False

    # The entry function's scalar loops that store to more than this many places per iteration are
    # not vectorised by LLVM. Such loops are serial per-call layout work on the weights (Winograd
    # weight transforms, packed or flipped weights: unrolled over the taps), whose run time is lost
    # in a training step, while the loop vectoriser's time grows with the product of a loop's
    # stores and memory accesses (it checks every pair, at every vector width): in cifar_deep's
    # train step they took 40 % of the entry function's compile time, and the step is as fast
    # without (benchmarks/bench_compile.py). Elementwise loops and reductions store one value per
    # output and stay vectorised. None: every loop may be vectorised.
    entry_vectorize_max_stores = 8

    # Nor those whose counter runs to a constant below this: the per-call layout work on the
    # weights again (a filter's sub-filter taps, a row block of filters: loop nests of some tens
    # of iterations each), cold, and in allconv's train step most of what the loop vectoriser
    # analysed (its entry part: 0.36 -> 0.23 s of LLVM work with no entry loop vectorised); LeNet's
    # step was 1.01x slower with none, from its loops over thousands of elements, which stay
    # vectorised. None: no limit.
    entry_vectorize_min_trip = 256

    # On AVX-512 CPUs whose LLVM tuning prefers 256-bit vectors (Intel's, x86-64-v4), let the loop
    # vectoriser use 512-bit vectors too (it turns off the CPU's "prefer-256-bit" tuning). Measured
    # on the LeNet elementwise kernels (benchmarks/bench_loop_width.py, RESULTS.md): no difference
    # on an Emerald Rapids Xeon, so the loops use the lane count of the hand-written kernels, which
    # always use the full width (their GEMM is 1.3-2.2x faster at 512 bits than at 256 there).
    full_width_loops = True

    # Dot / FusedDot: float matrix-matrix products through microkernels/gemm.py (else the i-p-j
    # loop nest of kernels/dot.py), split over threads from this many multiply-adds on (about 10 us
    # on one core, as min_parallel_flops below). The classifier layers of the bench_models.py zoo
    # (100x4096 by 4096x10, 500x500 by 500x10, their gradients) have 2.5-4.1 M: from 4 M (1 << 22)
    # down to 1 M their train steps took 0.977 (allconv), 0.978 (LeNet), 0.974 (LeNet with sigmoid
    # and average pooling) of the time, 20 alternating rounds, 2 threads.
    packed_gemm = True
    gemm_min_parallel = 1 << 20

    # gemm.py with plain strided operands: one out-of-line driver per module (compile time).
    gemm_shared_driver = True

    # 3x3 unit-stride convolutions by Winograd's F(m x m, 3x3) (kernels/conv_winograd.py): the largest
    # output tile m to use. 2: F(2x2), whose float32 error (about 4e-7 of the largest output) is that
    # of a sum in another order; 4: F(4x4) where its tiles waste little (5-10 % faster models; float32
    # only up to conv_winograd.MAX_CHANNELS_F4 channels, where its error stays within about 3.3e-6 of
    # the largest output, a third of the debug mode's float32 tolerance);
    # 0: no Winograd kernels, the direct ones run. 5x5 ones take F(2x2, 5x5) where this is 2 or 3
    # (float32 error about 1e-6 of the largest output), F(4x4, 5x5) where it is 4 (float32 only up
    # to conv_winograd.MAX_CHANNELS_F4_5X5 channels, error within about 7e-6).
    winograd_max_tile = 4

    # Per-item loops (parallel.run_parallel): fewer items than this run on the calling thread; where
    # the lowering knows the work of an item (a convolution's images), less work than
    # min_parallel_flops multiply-adds and adds in all (about 10 us on one core) does.
    min_parallel = 8
    min_parallel_flops = 2_000_000

    # Elemwise ops over contiguous arrays: split over threads from this many elements on (PyTorch's
    # grain size; Theano's OpenMP elemwise started at 200000).
    elemwise_min_parallel = 1 << 15

    # Pooling kernels (kernels/pool.py): images are split over threads from this much work (input
    # plus output elements) on.
    pool_min_parallel = 1 << 15

    # Random streams (kernels/random.py): fewer Philox blocks than this (32k float32 values) run
    # on the calling thread.
    random_min_parallel_blocks = 8192

    @property
    def target(self):
        """(config.target_cpu, config.target_features): the machine code is compiled for."""
        from symcnn.config import config
        return (getattr(config, "target_cpu", "host"), getattr(config, "target_features", ""))

    @property
    def threads(self):
        """config.num_threads: the size of a module's thread pool."""
        from symcnn.config import config
        return config.num_threads

    def settings(self):
        """{name: value} of every setting, the properties included."""
        names = [k for k, v in vars(Options).items() if not k.startswith("_") and not callable(v)]
        return {k: getattr(self, k) for k in sorted(names)}

    def key(self):
        """Bytes for the compile cache's key: every setting."""
        return repr(sorted(self.settings().items())).encode()

    def __repr__(self):
        return "Options(" + ", ".join(f"{k}={v!r}" for k, v in self.settings().items()) + ")"


options = Options()
