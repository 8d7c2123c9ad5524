"""Geometry of a 2-d convolution, shared by the conv ops (conv.py, convpool.py) and the
native backend's kernels: argument normalisation (shapes, border mode,
subsample, dilation), padding and output-shape formulas, and the resolution of everything known
about the input, filter and output shapes with errors naming where conflicting sizes come from.

out = (in + 2 * pad - e) // stride + 1, with e = (k - 1) * dilation + 1 the extent of the
(dilated) filter and pad 0 ('valid'), e - 1 ('full'), e // 2 ('half') or given explicitly.
"""
import numpy as np

from ...graph.basic import Constant, Variable
from ..shape_arith import SCALAR, int_pair

__all__ = ["fmt_shape", "static_int", "norm_shape", "norm_pair", "norm_border_mode", "norm_subsample",
           "check_dilation", "extent", "padding", "out_len", "out_shape", "conv_flops", "resolve"]


def fmt_shape(shape):
    if shape is None:
        return "None"
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"


def static_int(v, what):
    """An int, None, or a constant symbolic scalar -> int/None (other symbolic -> None)."""
    if v is None:
        return None
    if isinstance(v, Constant):
        v = v.data
    if isinstance(v, Variable):
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, np.ndarray)):
        raise TypeError(f"{what} must contain ints or None, got {v!r}")
    v = int(v)
    if v < 0:
        raise ValueError(f"{what} must not contain negative sizes, got {v}")
    return v


def norm_shape(shape, what):
    """None or a 4-sequence of ints/None -> a 4-tuple (None entries for unknown)."""
    if shape is None:
        return (None,) * 4
    if isinstance(shape, Constant):
        shape = [int(s) for s in shape.data]
    if isinstance(shape, Variable):
        return (None,) * 4
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of 4 ints or None, got {shape!r}") from None
    if len(shape) != 4:
        raise ValueError(f"{what} must have 4 entries (batch, channels, rows, cols), got {shape!r}")
    return tuple(static_int(s, what) for s in shape)


def norm_pair(value, what, minimum):
    """An int (used for both dimensions) or a pair of ints, each >= minimum."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value, value)
    return int_pair(value, what, minimum)


def norm_border_mode(border_mode):
    """'valid' | 'full' | 'half' | (ph, pw) with (0, 0) written 'valid' (as Theano does)."""
    if isinstance(border_mode, str):
        if border_mode not in ("valid", "full", "half"):
            raise ValueError(f"conv2d: border_mode must be 'valid', 'full', 'half', an int or a pair of ints "
                             f"(the padding), got {border_mode!r}")
        return border_mode
    try:
        pad = norm_pair(border_mode, "border_mode", 0)
    except TypeError:
        raise ValueError(f"conv2d: border_mode must be 'valid', 'full', 'half', an int or a pair of ints "
                         f"(the padding), got {border_mode!r}") from None
    except ValueError:
        raise ValueError(f"conv2d: border_mode padding must be non-negative, got {border_mode!r}") from None
    return "valid" if pad == (0, 0) else pad


def norm_subsample(subsample):
    msg = f"conv2d: subsample must be a pair of positive ints (the strides), got {subsample!r}"
    try:
        return norm_pair(subsample, "subsample", 1)
    except TypeError:
        raise TypeError(msg) from None
    except ValueError:
        raise ValueError(msg) from None


def check_dilation(filter_dilation, who="conv2d"):
    """The dilation (dh, dw) as a pair of positive ints: the filter's taps dh rows and dw columns apart."""
    try:
        return norm_pair(filter_dilation, "filter_dilation", 1)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: filter_dilation must be an int >= 1 or a pair of ints >= 1 (rows, cols), "
                         f"got {filter_dilation!r}") from None


def extent(k, d, arith=SCALAR):
    """The rows (or cols) a k-tap filter dilated by d spans: (k - 1) * d + 1 (None when k is unknown)."""
    if k is None or d == 1:
        return k
    return arith.add(arith.mul(arith.sub(k, 1), d), 1)


def padding(border_mode, kh, kw, arith=SCALAR, dilation=(1, 1)):
    """(ph, pw) for a border mode and kernel size (dilated by `dilation`: 'full' and 'half' pad by the
    dilated extent); entries are None when unknown.
    Works with ints and symbolic int scalars (for infer_shape), and with the backend's IR
    values through `arith` (see symcnn/tensor/shape_arith.py)."""
    if border_mode in ("full", "half"):
        kh, kw = extent(kh, dilation[0], arith), extent(kw, dilation[1], arith)
    if border_mode == "valid":
        return 0, 0
    if border_mode == "full":
        return (None if kh is None else arith.sub(kh, 1)), (None if kw is None else arith.sub(kw, 1))
    if border_mode == "half":
        return (None if kh is None else arith.floordiv(kh, 2)), (None if kw is None else arith.floordiv(kw, 2))
    return tuple(border_mode)


def out_len(n, k, p, s, arith=SCALAR):
    """Output length along one axis: (n + 2 * p - k) // s + 1 (None when unknown)."""
    if n is None or k is None or p is None:
        return None
    return arith.add(arith.floordiv(arith.sub(arith.add(n, arith.mul(2, p)), k), s), 1)


def conv_flops(top, kern):
    """2 * N*K*C*kh*kw*OH*OW (multiply-adds, counted twice) of a convolution with output (N, K, OH, OW)
    and filters (K, C, kh, kw): the same for its two gradients."""
    n, k, oh, ow = (int(d) for d in top)
    _, c, kh, kw = (int(d) for d in kern)
    return 2 * n * k * c * kh * kw * oh * ow


def out_shape(imshp, kshp, border_mode, subsample, dilation=(1, 1)):
    ph, pw = padding(border_mode, kshp[2], kshp[3], dilation=dilation)
    return (imshp[0], kshp[0], out_len(imshp[2], extent(kshp[2], dilation[0]), ph, subsample[0]),
            out_len(imshp[3], extent(kshp[3], dilation[1]), pw, subsample[1]))


# ----------------------------------------------------------------------------------------------
# shape resolution shared by the conv ops (at build time and at run time)


def _merge(who, what, sources):
    """Merge (shape, description) sources of one 4-d shape; raise naming both sources on conflict."""
    merged, origin = [None] * 4, [None] * 4
    for shp, desc in sources:
        if shp is None:
            continue
        for d, s in enumerate(shp):
            if s is None:
                continue
            if merged[d] is None:
                merged[d], origin[d] = s, (shp, desc)
            elif merged[d] != s:
                oshp, odesc = origin[d]
                raise ValueError(f"{who}: inconsistent {what} shape: {desc} has shape {fmt_shape(shp)} but "
                                 f"{odesc} has shape {fmt_shape(oshp)} (dimension {d}: {s} vs {merged[d]})")
    return merged, origin


def _origin(origin, d, default):
    return origin[d][1] if origin[d] is not None else default


def resolve(who, border_mode, subsample, im_srcs, k_srcs, top_srcs, dilation=(1, 1)):
    """Combine everything known about the input, filters and output shapes (of a convolution
    whose filters are dilated by `dilation`).

    Returns (imshp, kshp, outshp) as 4-tuples with None for unknown entries, or
    raises ValueError naming where the conflicting sizes come from.
    """
    im, im_o = _merge(who, "input", im_srcs)
    k, k_o = _merge(who, "filters", k_srcs)
    top, top_o = _merge(who, "output (gradient)", top_srcs)
    if im[1] is not None and k[1] is not None and im[1] != k[1]:
        raise ValueError(f"{who}: the input has {im[1]} channels ({_origin(im_o, 1, 'input')}) but the filters "
                         f"expect {k[1]} input channels ({_origin(k_o, 1, 'filters')}); "
                         f"filter_shape[1] must equal input_shape[1]")
    for d in (0, 1):
        a = im[0] if d == 0 else k[0]
        if a is not None and top[d] is not None and a != top[d]:
            what, src = (("batch size", _origin(im_o, 0, "input")) if d == 0
                         else ("number of filters", _origin(k_o, 0, "filters")))
            raise ValueError(f"{who}: the output gradient has {top[d]} in dimension {d} "
                             f"({_origin(top_o, d, 'output gradient')}) but the {what} is {a} ({src})")
    ph, pw = padding(border_mode, k[2], k[3], dilation=dilation)
    for d, p in ((2, ph), (3, pw)):
        e = extent(k[d], dilation[d - 2])
        if im[d] is not None and e is not None and im[d] + 2 * p < e:
            size = f"filter size {k[d]}" if e == k[d] else \
                f"dilated filter size {e} ({k[d]} taps, filter_dilation {dilation[d - 2]})"
            raise ValueError(f"{who}: the filters ({_origin(k_o, d, 'filters')}) are larger than the "
                             f"{'padded ' if p else ''}input ({_origin(im_o, d, 'input')}) in dimension {d}: "
                             f"{size} > input size {im[d]}" + (f" + 2 * padding {p}" if p else "")
                             + f" (border_mode={border_mode!r})")
    expect = out_shape(im, k, border_mode, subsample, dilation)
    for d in (2, 3):
        if expect[d] is not None and top[d] is not None and expect[d] != top[d]:
            raise ValueError(
                f"{who}: the output gradient ({_origin(top_o, d, 'output gradient')}) has shape {fmt_shape(top)}, "
                f"but a border_mode={border_mode!r}, subsample={subsample}"
                + (f", filter_dilation={tuple(dilation)}" if tuple(dilation) != (1, 1) else "")
                + f" convolution of an input of shape "
                f"{fmt_shape(im)} by filters of shape {fmt_shape(k)} gives {fmt_shape(expect)} (dimension {d}: "
                f"{top[d]} vs {expect[d]})")
    im = (im[0] if im[0] is not None else top[0], im[1] if im[1] is not None else k[1], im[2], im[3])
    k = (k[0] if k[0] is not None else top[1], k[1] if k[1] is not None else im[1], k[2], k[3])
    out = tuple(e if e is not None else t for e, t in zip(out_shape(im, k, border_mode, subsample, dilation), top))
    return im, k, out
