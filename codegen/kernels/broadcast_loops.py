"""The loop of an elementwise op whose inputs broadcast (a per-channel x - mean, a bias row), on the
threads.

Adjacent axes along which every input is laid out alike (each contiguous there, or broadcast
along all of them) merge into one: (B, C, H, W) - (1, C, 1, 1) runs as (B, C, H*W), so the
innermost loop is long, reads each input at unit stride or one fixed element (LLVM vectorises
it), and the threads take ranges of the outer rows. A single merged axis (all inputs alike
everywhere) is split over the threads as one range of elements.
"""
from llvmlite import ir

from .. import irutil as U
from ..options import options
from ..parallel import run_parallel


def merged_axes(out, ins, views, variables):
    """(axis groups, [strides of each view per group], output strides per group) of the loop over
    out's elements with the axes merged as above (ins: the inputs' arrays, views: as the loop reads
    them), or None when out or some input is not contiguous (a transposed view) or out has no axis
    of more than one element."""
    if not out.contiguous or not all(a.contiguous for a in ins):
        return None
    axes = [d for d in range(out.ndim) if not (isinstance(out.shape[d], int) and out.shape[d] == 1)]
    if not axes:
        return None
    spread = [[var.type.shape[d] == 1 for d in axes] for var in variables]   # broadcast along axis d
    groups = []
    for j, d in enumerate(axes):
        if groups and all(s[j - 1] == s[j] for s in spread):
            groups[-1].append(d)
        else:
            groups.append([d])
    return groups, [[v.strides[g[-1]] for g in groups] for v in views], [out.strides[g[-1]] for g in groups]


def run(ctx, prefix, out, views, merged, element, T):
    """out[i] = element(bctx, [view values at i]) over the merged loop (merged_axes), on up to T
    threads once there are options.elemwise_min_parallel elements (each pointer captured once: an
    input read through the output's pointer stays the same value inside)."""
    b = ctx.b
    groups, strides, out_strides = merged
    shape = [U.product(b, [out.shape[d] for d in g]) for g in groups]
    ptrs = []
    for p in [v.ptr for v in views] + [out.ptr]:
        if not any(p is q for q in ptrs):
            ptrs.append(p)
    where = [next(k for k, q in enumerate(ptrs) if q is v.ptr) for v in views]
    at_out = next(k for k, q in enumerate(ptrs) if q is out.ptr)
    dims = shape + [s for ss in strides for s in ss] + out_strides
    values = ptrs + dims
    nd, nv = len(shape), len(views)
    rows = U.product(b, shape[:-1])
    items = shape[0] if nd == 1 else rows   # one axis: ranges of elements; else ranges of rows

    def emit(bctx, vals, tid, i0, i1):
        bb = bctx.b
        ps, ds = vals[:len(ptrs)], vals[len(ptrs):]
        sh = ds[:nd]
        st = [ds[nd + k * nd: nd + (k + 1) * nd] for k in range(nv)]
        ost = ds[nd + nv * nd:]

        def row(base, obase, start, stop):
            with U.for_range(bb, stop, start=start, name="bcast_i") as i:
                xs = [bb.load(U.gep(bb, ps[where[k]], U.add(bb, base[k], U.mul(bb, i, st[k][-1])), v.lltype),
                              typ=v.lltype) for k, v in enumerate(views)]
                at = U.add(bb, obase, U.mul(bb, i, ost[-1]))
                bb.store(element(bctx, xs), U.gep(bb, ps[at_out], at, out.lltype))

        if nd == 1:
            row([0] * nv, 0, i0, i1)
            return
        with U.for_range(bb, i1, start=i0, name="bcast_row") as r:
            base, obase, rest = [0] * nv, 0, r
            for j in reversed(range(nd - 1)):   # r's index along each outer axis, the last fastest
                size = U.as_value(bb, sh[j])
                idx = bb.srem(rest, size)
                rest = bb.sdiv(rest, size)
                base = [U.add(bb, base[k], U.mul(bb, idx, st[k][j])) for k in range(nv)]
                obase = U.add(bb, obase, U.mul(bb, idx, ost[j]))
            row(base, obase, U.i64(0), sh[-1])

    total = U.product(b, shape)
    if T == 1 or (isinstance(total, int) and total < options.elemwise_min_parallel):
        emit(ctx, values, U.i64(0), U.i64(0), U.as_value(b, items))
        return
    # a static size: the dispatch only (the split must see that nothing calls the body directly)
    serial = (ir.Constant(U.I1, 0) if isinstance(total, int)
              else b.icmp_signed("<", U.as_value(b, total), U.i64(options.elemwise_min_parallel)))
    run_parallel(ctx, prefix, values, items, T, emit, serial=serial, inline_serial=True)
