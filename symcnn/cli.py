"""argparse types for the example scripts' shared arguments: bad values are reported by
argparse (usage line, exit status 2) before any data is loaded or any code is compiled."""
import argparse
import math
import os
import tempfile

__all__ = ["positive_int", "non_negative_int", "positive_float", "writable_file"]


def _int_at_least(minimum, words):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {words}, got {value}")
        return value
    return parse


positive_int = _int_at_least(1, "at least 1")
non_negative_int = _int_at_least(0, "0 or more")


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def writable_file(text):
    """A path whose folder exists and where a file can be created (tried with a temporary file,
    removed at once), so that a checkpoint or model can be written at the end of training."""
    path = os.path.expanduser(text)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".symcnn-write-test-"):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {e.strerror or e} in {folder}") from None
    return path
