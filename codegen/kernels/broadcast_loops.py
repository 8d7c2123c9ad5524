"""The loop of an elementwise op whose inputs broadcast (a per-channel x - mean, a bias row), on the
threads.

Adjacent axes along which every input is laid out alike (each contiguous there, or broadcast
along all of them) merge into one: (B, C, H, W) - (1, C, 1, 1) runs as (B, C, H*W), so the
innermost loop is long, reads each input at unit stride or one fixed element (LLVM vectorises
it), and the threads take ranges of the outer rows. A single merged axis (all inputs alike
everywhere) is split over the threads as one range of elements.

An input read across memory (a transposed view, x.T + y) goes by tiles instead (run_tiled): the
last two axes in TILE x TILE blocks, so that the rows of the strided input a block reads stay in
cache while the block writes the output along its rows; the threads take ranges of tile rows.
"""
from .. import irutil as U
from ..parallel import run_by_work


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


def _pointers(views, out):
    """(each distinct pointer once, each view's index in it, the output's index)."""
    ptrs = []
    for p in [v.ptr for v in views] + [out.ptr]:
        if not any(p is q for q in ptrs):
            ptrs.append(p)
    where = [next(k for k, q in enumerate(ptrs) if q is v.ptr) for v in views]
    return ptrs, where, next(k for k, q in enumerate(ptrs) if q is out.ptr)


def _outer_offsets(bb, rest, sizes, strides_per_array):
    """The offsets of flat index `rest` over axes of `sizes` (the last fastest) in each array."""
    offs = [0] * len(strides_per_array)
    for j in reversed(range(len(sizes))):
        size = U.as_value(bb, sizes[j])
        idx = bb.srem(rest, size)
        rest = bb.sdiv(rest, size)
        offs = [U.add(bb, o, U.mul(bb, idx, st[j])) for o, st in zip(offs, strides_per_array)]
    return offs


def run(ctx, prefix, out, views, merged, element, T):
    """out[i] = element(bctx, [view values at i]) over the merged loop (merged_axes), on up to T
    threads once there are options.elemwise_min_parallel elements (each pointer captured once: an
    input read through the output's pointer stays the same value inside)."""
    b = ctx.b
    groups, strides, out_strides = merged
    shape = [U.product(b, [out.shape[d] for d in g]) for g in groups]
    ptrs, where, at_out = _pointers(views, out)
    dims = shape + [s for ss in strides for s in ss] + out_strides
    values = ptrs + dims
    nd, nv = len(shape), len(views)
    items = shape[0] if nd == 1 else U.product(b, shape[:-1])   # one axis: ranges of elements; else of rows

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
            offs = _outer_offsets(bb, r, sh[:-1], [stv[:-1] for stv in st] + [ost[:-1]])
            row(offs[:-1], offs[-1], U.i64(0), sh[-1])

    run_by_work(ctx, prefix, values, items, U.product(b, shape), T, emit)


TILE = 32   # a block's rows and columns: 32 rows of a strided input, one cache line each, stay in L1


def run_tiled(ctx, prefix, out, views, element, T):
    """out[i] = element(bctx, [view values at i]) over out (contiguous, 2 or more axes; the views
    any strides) by TILE x TILE blocks of its last two axes, on up to T threads (see run)."""
    b = ctx.b
    nd, nv = out.ndim, len(views)
    ptrs, where, at_out = _pointers(views, out)
    values = ptrs + list(out.shape) + [s for v in views for s in v.strides] + list(out.strides)
    tiles_i = U.floordiv(b, U.add(b, out.shape[-2], TILE - 1), TILE)
    items = U.mul(b, U.product(b, out.shape[:-2]), tiles_i)

    def emit(bctx, vals, tid, i0, i1):
        bb = bctx.b
        ps, ds = vals[:len(ptrs)], vals[len(ptrs):]
        sh = ds[:nd]
        st = [ds[nd + k * nd: nd + (k + 1) * nd] for k in range(nv)] + [ds[nd + nv * nd:]]
        n_i = U.floordiv(bb, U.add(bb, sh[-2], TILE - 1), TILE)
        with U.for_range(bb, i1, start=i0, name="tile_row") as item:
            ti = bb.srem(item, U.as_value(bb, n_i))
            base = _outer_offsets(bb, bb.sdiv(item, U.as_value(bb, n_i)), sh[:-2], [s[:-2] for s in st])
            lo_i = bb.mul(ti, U.i64(TILE))
            hi_i = U.smin(bb, U.add(bb, lo_i, TILE), sh[-2])
            with U.for_range(bb, U.floordiv(bb, U.add(bb, sh[-1], TILE - 1), TILE), name="tile_col") as tj:
                lo_j = bb.mul(tj, U.i64(TILE))
                hi_j = U.smin(bb, U.add(bb, lo_j, TILE), sh[-1])
                with U.for_range(bb, hi_i, start=lo_i, name="tile_i") as i:
                    row = [U.add(bb, o, U.mul(bb, i, s[-2])) for o, s in zip(base, st)]
                    with U.for_range(bb, hi_j, start=lo_j, name="tile_j") as j:
                        at = [U.add(bb, o, U.mul(bb, j, s[-1])) for o, s in zip(row, st)]
                        xs = [bb.load(U.gep(bb, ps[where[k]], at[k], v.lltype), typ=v.lltype)
                              for k, v in enumerate(views)]
                        bb.store(element(bctx, xs), U.gep(bb, ps[at_out], at[-1], out.lltype))

    run_by_work(ctx, prefix, values, items, U.product(b, out.shape), T, emit)
