"""Global settings, as Theano's `theano.config`.

Read once from the environment: SYMCNN_FLOATX, SYMCNN_MODE, and SYMCNN_FLAGS
("floatX=float64,mode=reference,check_graph=1", like THEANO_FLAGS), SYMCNN_NUM_THREADS (at most the cores the
process may use: a larger value is capped, with a warning). Attributes can be assigned at run time too.
"""
import os

_FLOATS = ("float32", "float64")


def _default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover
        return max(1, os.cpu_count() or 1)


class WarnFlags:
    """theano.config.warn: Theano's switches for warnings about old bugs. Scripts set them at
    import time (`theano.config.warn.subtensor_merge_bug = False`); symcnn has none of those
    bugs, so every name is accepted, remembered and otherwise ignored (unset names read False)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return False

    def __repr__(self):
        # The compile cache's key includes repr(config); these flags change no code, so their
        # values stay out of it (a script setting them still hits the cache).
        return "WarnFlags()"


_TEST_VALUE_MODES = ("off", "ignore", "warn", "raise", "pdb")


class Config:
    def __init__(self):
        self.warn = WarnFlags()
        # Theano's compute_test_value: 'off', or evaluate every new node on its inputs'
        # .tag.test_value while the graph is built ('ignore'/'warn'/'raise'/'pdb' say what to do
        # when an input has no test value).
        self.compute_test_value = "off"
        self.floatX = "float32"
        self.mode = "native"
        self.compiledir = os.path.join(os.path.expanduser("~"), ".cache", "symcnn")
        self.allow_input_downcast = False
        # Theano's rule for the dtype of mixed operations: 'custom' (the default: Python ints
        # take the smallest int dtype, Python floats floatX) or 'numpy+floatX' (numpy's rules,
        # but float64 results become float32 when floatX is float32 and no input is float64).
        self.cast_policy = "custom"
        # Threads the native kernels may use (read when a function is compiled; 1 disables threads).
        self.num_threads = _default_threads()
        # The machine native code is compiled for (read when a function is compiled): "host", an
        # LLVM CPU name ("haswell", "znver4", ...) or an x86-64 level ("x86-64", "x86-64-v2",
        # "x86-64-v3", "x86-64-v4"); target_features adds LLVM feature flags ("+avx2,-avx512f").
        # Only strings here: the native backend interprets them.
        self.target_cpu = "host"
        self.target_features = ""
        # Check the graph's bookkeeping (FunctionGraph.check_integrity) after every rewrite, naming
        # the rewrite that broke it (SYMCNN_FLAGS=check_graph=1; the test suite turns it on).
        self.check_graph = False
        # Compile a function again for its arguments' sizes where its graph leaves sizes open that
        # choose a convolution's kernels (compile/specialize.py); SYMCNN_FLAGS=specialize_shapes=0
        # keeps the general kernels.
        self.specialize_shapes = True
        flags = dict(kv.split("=", 1) for kv in os.environ.get("SYMCNN_FLAGS", "").split(",") if "=" in kv)
        for key, value in flags.items():
            target, key = self, key.strip()
            if key.startswith("warn."):
                target, key = self.warn, key[len("warn."):]
            setattr(target, key, value.strip())
        self.floatX = os.environ.get("SYMCNN_FLOATX", self.floatX)
        self.mode = os.environ.get("SYMCNN_MODE", self.mode)
        self.num_threads = os.environ.get("SYMCNN_NUM_THREADS", self.num_threads)

    def __setattr__(self, key, value):
        if key == "floatX" and value not in _FLOATS:
            raise ValueError(f"config.floatX must be one of {_FLOATS}, got {value!r}")
        if key == "cast_policy":
            if value not in ("custom", "numpy+floatX"):
                raise ValueError(f"config.cast_policy must be 'custom' or 'numpy+floatX', got {value!r}")
        if key == "compute_test_value" and value not in _TEST_VALUE_MODES:
            raise ValueError(f"config.compute_test_value must be one of {_TEST_VALUE_MODES}, got {value!r}")
        if key == "warn" and not isinstance(value, WarnFlags):
            raise TypeError("config.warn holds flags: set its attributes (config.warn.round = False)")
        if key == "num_threads":
            value = int(value)
            if value < 1:
                raise ValueError(f"config.num_threads must be >= 1, got {value}")
            cores = _default_threads()
            if value > cores:
                # more threads than cores only adds switching and memory (2000 threads: an epoch
                # took minutes and most of a GB)
                import warnings
                warnings.warn(f"num_threads={value} is more than the {cores} cores this process may use "
                              f"(os.sched_getaffinity); using {cores}", RuntimeWarning, stacklevel=2)
                value = cores
        if key in ("check_graph", "specialize_shapes") and isinstance(value, str):
            if value.strip().lower() not in ("0", "1", "false", "true"):
                raise ValueError(f"config.{key} must be 0 or 1 (False or True), got {value!r}")
            value = value.strip().lower() in ("1", "true")
        if key in ("target_cpu", "target_features"):
            if not isinstance(value, str):
                raise TypeError(f"config.{key} must be a string, got {type(value).__name__}")
            value = value.strip() or ("host" if key == "target_cpu" else "")
        object.__setattr__(self, key, value)


config = Config()
