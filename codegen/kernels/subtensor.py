"""Indexing: Subtensor (a view: pointer offset plus new shape/strides), IncSubtensor
(copy, then add/set into a view of the copy), AdvancedSubtensor (gather) and
AdvancedIncSubtensor (scatter-add / set), all with numpy's semantics.

Index arithmetic is written once over "maybe static" values: Python ints and bools
fold at compile time, i64/i1 IR values are emitted otherwise (see the _lt/_sel/...
helpers), so `x[2:5]` of a static shape costs nothing and `x[i*500:(i+1)*500]`
costs a few selects.
"""
import numpy as np
from llvmlite import ir

from symcnn.graph.basic import Constant
from symcnn.tensor.subtensor import AdvancedIncSubtensor, AdvancedSubtensor, IncSubtensor, Subtensor

from .. import irutil as U
from ..lower import E_INDEX, E_INDEX_BROADCAST, E_SHAPE, E_ZERO_STEP, Array, copy, lower


# -- folding helpers: ints/bools stay Python values, anything else is IR ---------------------

def _static(v):
    return isinstance(v, (bool, int, np.integer))


def _icmp(b, pred, x, y):
    if _static(x) and _static(y):
        x, y = int(x), int(y)
        return {"<": x < y, ">": x > y, "==": x == y, "!=": x != y, ">=": x >= y, "<=": x <= y}[pred]
    return b.icmp_signed(pred, U.as_value(b, x), U.as_value(b, y))


def _sel(b, c, x, y):
    if isinstance(c, (bool, np.bool_)):
        return x if c else y
    if _static(x) and _static(y) and x == y:
        return x
    return b.select(c, U.as_value(b, x), U.as_value(b, y))


def _or(b, x, y):
    if isinstance(x, bool):
        return True if x else y
    if isinstance(y, bool):
        return True if y else x
    return b.or_(x, y)


def _neg(b, x):
    return -x if _static(x) else b.neg(x)


def _sdiv(b, x, y):
    """x / y for x >= 0, y > 0 (so C and Python division agree)."""
    if _static(x) and _static(y):
        return x // y
    if _static(y) and y == 1:
        return x
    return b.sdiv(U.as_value(b, x), U.as_value(b, y))


def _fail(ctx, cond, code, *values):
    """fail_if, or nothing when the condition is statically false."""
    if isinstance(cond, bool):
        if cond:
            # Statically out of range (make_node only catches constant index on static shape).
            vals = [U.as_value(ctx.b, v) for v in values]
            ctx.fail_if(ir.Constant(U.I1, 1), code, *vals)
        return
    ctx.fail_if(cond, code, *values)


def _index_value(ctx, var, arr):
    """An integer index scalar: a Python int for constants, an i64 otherwise."""
    if isinstance(var, Constant):
        return int(np.asarray(var.data))
    return ctx.load_index(arr)


# -- basic indexing ---------------------------------------------------------------------------

def _wrap_index(ctx, i, n):
    """numpy's x[i] along a dimension of length n: wrap negatives, E_INDEX when out of range."""
    b = ctx.b
    w = _sel(b, _icmp(b, "<", i, 0), U.add(b, i, n), i)
    bad = _or(b, _icmp(b, "<", w, 0), _icmp(b, ">=", w, n))
    _fail(ctx, bad, E_INDEX, i, n)
    return w


def _slice(ctx, n, start, stop, step):
    """Python's slice(start, stop, step).indices(n) -> (start, step, length); None = omitted."""
    b = ctx.b
    if step is None:
        step = 1
    elif not _static(step):
        ctx.fail_if(b.icmp_signed("==", step, U.i64(0)), E_ZERO_STEP, step)
    elif step == 0:
        raise ValueError("slice step cannot be zero")
    neg = _icmp(b, "<", step, 0)
    lower_ = _sel(b, neg, -1, 0)
    upper = _sel(b, neg, U.sub(b, n, 1), n)

    def clamp(v, default):
        if v is None:
            return default
        v = _sel(b, _icmp(b, "<", v, 0), U.add(b, v, n), v)
        v = _sel(b, _icmp(b, "<", v, lower_), lower_, v)
        return _sel(b, _icmp(b, ">", v, upper), upper, v)

    start = clamp(start, _sel(b, neg, upper, lower_))
    stop = clamp(stop, _sel(b, neg, lower_, upper))
    num = _sel(b, neg, U.sub(b, start, stop), U.sub(b, stop, start))
    den = _sel(b, neg, _neg(b, step), step)
    length = _sel(b, _icmp(b, ">", num, 0), U.add(b, _sdiv(b, U.sub(b, num, 1), den), 1), 0)
    # An empty slice may clamp its start to -1: keep the view's pointer inside the array.
    start = _sel(b, _icmp(b, "==", length, 0), 0, start)
    return start, step, length


def _basic_view(ctx, idx_list, x, index_vars, index_arrs, contiguous):
    """x[idx] as an Array sharing x's memory."""
    b = ctx.b
    it = iter(zip(index_vars, index_arrs))

    def nxt(flag):
        if not flag:
            return None
        var, arr = next(it)
        return _index_value(ctx, var, arr)

    offset, shape, strides = 0, [], []
    for d, e in enumerate(idx_list):
        n, s = x.shape[d], x.strides[d]
        if e == "int":
            i = _wrap_index(ctx, nxt(True), n)
            offset = U.add(b, offset, U.mul(b, i, s))
            continue
        _, has_a, has_b, has_c = e
        start, stop, step = nxt(has_a), nxt(has_b), nxt(has_c)
        start, step, length = _slice(ctx, n, start, stop, step)
        offset = U.add(b, offset, U.mul(b, start, s))
        shape.append(length)
        strides.append(U.mul(b, s, step))
    shape += x.shape[len(idx_list):]
    strides += x.strides[len(idx_list):]
    ptr = x.ptr if _static(offset) and offset == 0 else x.view_addr(b, offset)
    if contiguous:
        return Array(x.dtype, ptr, shape, b=b)
    return Array(x.dtype, ptr, shape, strides)


def _subtensor_contiguous(idx_list, x_contiguous):
    """Conservative: ints on leading dims, then at most one step-1 slice, then only full slices."""
    if not x_contiguous:
        return False
    k = 0
    while k < len(idx_list) and idx_list[k] == "int":
        k += 1
    if k < len(idx_list):
        e = idx_list[k]
        if e[3]:  # an explicit step (even a constant 1 is not trusted here)
            return False
        k += 1
    return all(e != "int" and not any(e[1:]) for e in idx_list[k:])


def _subtensor_view(node, contig):
    return True, _subtensor_contiguous(node.op.idx_list, contig[0])


@lower.register(Subtensor, view=_subtensor_view)
def lower_subtensor(ctx, node, ins):
    x = ins[0]
    contiguous = _subtensor_contiguous(node.op.idx_list, x.contiguous)
    return [_basic_view(ctx, node.op.idx_list, x, node.inputs[1:], ins[1:], contiguous)]


def _broadcast_to(ctx, y, shape):
    """y (ndim <= len(shape)) as a strided view of `shape`: leading dims and length-1 dims
    (static or at run time) broadcast; other lengths must match (E_SHAPE)."""
    b = ctx.b
    lead = len(shape) - y.ndim
    strides = [0] * lead
    for d in range(y.ndim):
        yd, od = y.shape[d], shape[lead + d]
        one = _icmp(b, "==", yd, 1)
        bad = _icmp(b, "!=", yd, od)
        if isinstance(one, bool):
            bad = False if one else bad
        elif isinstance(bad, bool):
            bad = False if not bad else b.not_(one)
        else:
            bad = b.and_(bad, b.not_(one))
        _fail(ctx, bad, E_SHAPE, yd, od)
        strides.append(_sel(b, one, 0, y.strides[d]))
    return Array(y.dtype, y.ptr, shape, strides)


def _accumulate(ctx, dst, y, idx, set_instead):
    b = ctx.b
    v = y.load(b, idx)
    if set_instead:
        dst.store(b, idx, U.cast_value(b, v, y.dtype, dst.dtype))
        return
    cdt = str(np.result_type(dst.dtype, y.dtype))
    cur = U.cast_value(b, dst.load(b, idx), dst.dtype, cdt)
    v = U.cast_value(b, v, y.dtype, cdt)
    if cdt == "bool":
        r = b.or_(cur, v)
    else:
        r = (b.fadd if U.is_float(cdt) else b.add)(cur, v)
    dst.store(b, idx, U.cast_value(b, r, cdt, dst.dtype))


@lower.register(IncSubtensor)
def lower_inc_subtensor(ctx, node, ins):
    x, y = ins[:2]
    out = ctx.alloc(node.outputs[0], x.shape)
    copy(ctx, x, out)
    region = _basic_view(ctx, node.op.idx_list, out, node.inputs[2:], ins[2:], False)
    yb = _broadcast_to(ctx, y, region.shape)
    with U.loop_nest(ctx.b, region.shape, name="s") as idx:
        _accumulate(ctx, region, yb, idx, node.op.set_instead_of_inc)
    return [out]


# -- advanced indexing ------------------------------------------------------------------------

def _broadcast_dims(ctx, shapes):
    """numpy broadcasting of the index arrays' shapes (run-time length-1 dims broadcast)."""
    b = ctx.b
    nd = max(len(s) for s in shapes)
    aligned = [[1] * (nd - len(s)) + list(s) for s in shapes]
    out = []
    for dims in zip(*aligned):
        res = 1
        for dd in dims:
            res = _sel(b, _icmp(b, "!=", dd, 1), dd, res)
        for dd in dims:
            bad = _icmp(b, "!=", dd, res)
            one = _icmp(b, "==", dd, 1)
            if isinstance(one, bool) and one:
                continue
            if not isinstance(bad, bool) and not isinstance(one, bool):
                bad = b.and_(bad, b.not_(one))
            _fail(ctx, bad, E_INDEX_BROADCAST, dd, res)
        out.append(res)
    return out


def _adv_plan(ctx, idx_list, x, idxs):
    """(selection shape, position of the broadcast block, its length, rank-aligned index views)."""
    arrays = [k for k, e in enumerate(idx_list) if e == "array"]
    bshape = _broadcast_dims(ctx, [a.shape for a in idxs])
    consecutive = arrays == list(range(arrays[0], arrays[-1] + 1))
    pos = arrays[0] if consecutive else 0
    rest = [x.shape[d] for d, e in enumerate(idx_list) if e == "slice"] + list(x.shape[len(idx_list):])
    shape = rest[:pos] + bshape + rest[pos:]
    views = []
    for a in idxs:  # each index array as a view of the full broadcast block
        views.append(_broadcast_to(ctx, a, bshape))
    return shape, pos, len(bshape), views


def _check_indices(ctx, idx_list, x, idxs):
    """Every index value in range for its dimension (E_INDEX with the value and the length)."""
    b = ctx.b
    dims = [d for d, e in enumerate(idx_list) if e == "array"]
    for a, d in zip(idxs, dims):
        n = x.shape[d]
        with U.loop_nest(b, a.shape, name="chk") as idx:
            i = U.cast_value(b, a.load(b, idx), a.dtype, "int64")
            if U.is_unsigned(a.dtype) and a.dtype != "uint64":
                bad = b.icmp_signed(">=", i, U.as_value(b, n))
            else:
                bad = b.or_(b.icmp_signed("<", i, U.as_value(b, _neg(b, n))),
                            b.icmp_signed(">=", i, U.as_value(b, n)))
            ctx.fail_if(bad, E_INDEX, i, n)


def _adv_offset(ctx, idx_list, x, views, pos, nb, idx):
    """The element offset in x of selection element `idx` (indices already checked)."""
    b = ctx.b
    bidx = idx[pos:pos + nb]
    ridx = iter(idx[:pos] + idx[pos + nb:])
    vit = iter(views)
    off = 0
    for d, e in enumerate(idx_list):
        if e == "array":
            a = next(vit)
            i = U.cast_value(b, a.load(b, bidx), a.dtype, "int64")
            n = U.as_value(b, x.shape[d])
            i = b.select(b.icmp_signed("<", i, U.i64(0)), b.add(i, n), i)
        else:
            i = next(ridx)
        off = U.add(b, off, U.mul(b, i, x.strides[d]))
    for d in range(len(idx_list), x.ndim):
        off = U.add(b, off, U.mul(b, next(ridx), x.strides[d]))
    return off


@lower.register(AdvancedSubtensor)
def lower_advanced_subtensor(ctx, node, ins):
    b = ctx.b
    x, idxs = ins[0], ins[1:]
    idx_list = node.op.idx_list
    shape, pos, nb, views = _adv_plan(ctx, idx_list, x, idxs)
    _check_indices(ctx, idx_list, x, idxs)
    out = ctx.alloc(node.outputs[0], shape)
    with U.loop_nest(b, out.shape, name="g") as idx:
        off = _adv_offset(ctx, idx_list, x, views, pos, nb, idx)
        out.store(b, idx, b.load(x.flat_addr(b, off), typ=x.lltype))
    return [out]


@lower.register(AdvancedIncSubtensor)
def lower_advanced_inc_subtensor(ctx, node, ins):
    b = ctx.b
    x, y, idxs = ins[0], ins[1], ins[2:]
    idx_list = node.op.idx_list
    out = ctx.alloc(node.outputs[0], x.shape)
    copy(ctx, x, out)
    shape, pos, nb, views = _adv_plan(ctx, idx_list, out, idxs)
    _check_indices(ctx, idx_list, out, idxs)
    yb = _broadcast_to(ctx, y, shape)
    with U.loop_nest(b, shape, name="sc") as idx:
        off = _adv_offset(ctx, idx_list, out, views, pos, nb, idx)
        cell = Array(out.dtype, out.flat_addr(b, off), [], [])
        one = Array(yb.dtype, yb.addr(b, idx), [], [])
        _accumulate(ctx, cell, one, [], node.op.set_instead_of_inc)
    return [out]
