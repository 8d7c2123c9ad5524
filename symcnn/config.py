"""Global settings, as Theano's `theano.config`.

Read once from the environment: SYMCNN_FLOATX, SYMCNN_MODE, and SYMCNN_FLAGS
("floatX=float64,mode=reference", like THEANO_FLAGS), SYMCNN_NUM_THREADS. Attributes can be
assigned at run time too.
"""
import os

_FLOATS = ("float32", "float64")


def _default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover
        return max(1, os.cpu_count() or 1)


class Config:
    def __init__(self):
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
        flags = dict(kv.split("=", 1) for kv in os.environ.get("SYMCNN_FLAGS", "").split(",") if "=" in kv)
        for key, value in flags.items():
            setattr(self, key.strip(), value.strip())
        self.floatX = os.environ.get("SYMCNN_FLOATX", self.floatX)
        self.mode = os.environ.get("SYMCNN_MODE", self.mode)
        self.num_threads = os.environ.get("SYMCNN_NUM_THREADS", self.num_threads)

    def __setattr__(self, key, value):
        if key == "floatX" and value not in _FLOATS:
            raise ValueError(f"config.floatX must be one of {_FLOATS}, got {value!r}")
        if key == "cast_policy":
            if value not in ("custom", "numpy+floatX"):
                raise ValueError(f"config.cast_policy must be 'custom' or 'numpy+floatX', got {value!r}")
        if key == "num_threads":
            value = int(value)
            if value < 1:
                raise ValueError(f"config.num_threads must be >= 1, got {value}")
        object.__setattr__(self, key, value)


config = Config()
