"""Global settings, as Theano's `theano.config`.

Read once from the environment: SYMCNN_FLOATX, SYMCNN_MODE, and SYMCNN_FLAGS
("floatX=float64,mode=reference", like THEANO_FLAGS). Attributes can be
assigned at run time too.
"""
import os

_FLOATS = ("float32", "float64")


class Config:
    def __init__(self):
        self.floatX = "float32"
        self.mode = "native"
        self.compiledir = os.path.join(os.path.expanduser("~"), ".cache", "symcnn")
        self.allow_input_downcast = False
        flags = dict(kv.split("=", 1) for kv in os.environ.get("SYMCNN_FLAGS", "").split(",") if "=" in kv)
        for key, value in flags.items():
            setattr(self, key.strip(), value.strip())
        self.floatX = os.environ.get("SYMCNN_FLOATX", self.floatX)
        self.mode = os.environ.get("SYMCNN_MODE", self.mode)

    def __setattr__(self, key, value):
        if key == "floatX" and value not in _FLOATS:
            raise ValueError(f"config.floatX must be one of {_FLOATS}, got {value!r}")
        object.__setattr__(self, key, value)


config = Config()
