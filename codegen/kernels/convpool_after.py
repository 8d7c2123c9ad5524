"""The elementwise passes of ConvPoolAct / ConvPoolActGrad in the order conv -> + bias -> act -> pool
(op.order == 'act_pool'; the kernels are codegen/kernels/convpool.py's).

Per image, on the conv tile that convpool.py's kernels keep in cache (K rows of `tile_row` values,
conv row i of filter k at k * tile_row + i * row):

  forward    act_in_tile: tile = act(tile + b[k]) in place (and z, act stored at full resolution
             when the derivative reads them); then convpool.py's pooling epilogue pools the
             activated tile (no bias: it is already in) into out and the tie mask.
  backward   convpool.py's scatter routes the pooled gradient into the zeroed tile (through the tie
             mask, or spread over average windows), giving g_act; act_grad_in_tile then makes it
             g_pre = dact(z, act, g_act) in place and adds its per-filter sums to gb; the tile is
             then the conv-output gradient the weight and input gradients read.

Each pass is a plain contiguous loop per conv row, which LLVM's loop vectoriser widens (as the
other epilogue loops of convpool.py).
"""
from .. import irutil as U
from ..irutil import gep
from .elemwise import emit_scalar


def activation(op, dt):
    """The op's activation program; the identity when it has none."""
    if op.act is not None:
        return op.act
    from symcnn import scalar as ts
    from symcnn.tensor.composite import Composite
    return Composite(1, [(ts.identity, (0,), (dt,), dt)])


def bias_act(ctx, op, dt, tile, tile_row, row, base, K, OH, OW, bptr, zptr, outs, in_place=False):
    """act(tile[k*tile_row + i*row + j] + b[k]) stored at `base` of every dense (K, OH, OW) block of
    outs, and back into the tile when in_place; z (the biased sum) too when zptr is given."""
    b = ctx.b
    et = U.ll_type(dt)
    plane = U.mul(b, OH, OW)
    prog = activation(op, dt)
    if isinstance(row, int) and isinstance(OW, int) and row == OW:   # dense planes: one long loop vectorises
        OH, OW, row = 1, plane, plane
    with U.for_range(b, K, name="ak") as k:
        bk = b.load(gep(b, bptr, k, et), typ=et) if bptr is not None else None
        tk = gep(b, tile, U.mul(b, k, tile_row), et)
        kbase = U.add(b, base, U.mul(b, k, plane))
        with U.for_range(b, OH, name="ai") as i:
            trow = gep(b, tk, U.mul(b, i, row), et)
            o = U.add(b, kbase, U.mul(b, i, OW))
            zrow = gep(b, zptr, o, et) if zptr is not None else None
            orows = [gep(b, q, o, et) for q in outs]
            with U.for_range(b, OW, name="aj", fold_tail=U.fold_tail_pays(OW, dt)) as j:
                src = gep(b, trow, j, et)
                v = b.load(src, typ=et)
                if bk is not None:
                    v = b.fadd(v, bk)
                if zrow is not None:
                    b.store(v, gep(b, zrow, j, et))
                a = emit_scalar(ctx, prog, [v], [dt], dt)
                for orow in orows:
                    b.store(a, gep(b, orow, j, et))
                if in_place:
                    b.store(a, src)


def act_in_tile(ctx, op, dt, tile, tile_row, row, base, K, OH, OW, bptr, zptr, aptr):
    """tile[k*tile_row + i*row + j] = act(tile[..] + b[k]) for the image whose z / act blocks start
    at `base` (dense (K, OH, OW)); z and act are stored there when their pointers are given."""
    bias_act(ctx, op, dt, tile, tile_row, row, base, K, OH, OW, bptr, zptr, [aptr] if aptr is not None else [],
             in_place=True)


def act_grad_in_tile(ctx, op, dt, top, tile_row, row, base, K, OH, OW, zptr, aptr, gb64, row_sum):
    """top[k*tile_row + i*row + j] = dact(z, act, top[..]) with z, act read from the image's dense
    (K, OH, OW) blocks at `base` (None: the program does not read it; a 0 is passed; with
    op.recompute_act, act is act(z), computed as the forward did); gb64[k] += the float64 sum of
    filter k's values (row_sum: kernels/row_sum.py's fixed-order vector sum)."""
    b = ctx.b
    et = U.ll_type(dt)
    plane = U.mul(b, OH, OW)
    zero = U.const(dt, 0.0)
    act = activation(op, dt)
    with U.for_range(b, K, name="gk") as k:
        tk = gep(b, top, U.mul(b, k, tile_row), et)
        kbase = U.add(b, base, U.mul(b, k, plane))
        with U.for_range(b, OH, name="gi") as i:
            trow = gep(b, tk, U.mul(b, i, row), et)
            o = U.add(b, kbase, U.mul(b, i, OW))
            rows = [gep(b, q, o, et) if q is not None else None for q in (zptr, aptr)]
            with U.for_range(b, OW, name="gj", fold_tail=U.fold_tail_pays(OW, dt)) as j:
                dst = gep(b, trow, j, et)
                vals = [b.load(gep(b, r, j, et), typ=et) if r is not None else zero for r in rows]
                if op.recompute_act:
                    vals[1] = emit_scalar(ctx, act, [vals[0]], [dt], dt)
                vals.append(b.load(dst, typ=et))
                b.store(emit_scalar(ctx, op.dact, vals, [dt] * 3, dt), dst)
        gbk = gep(b, gb64, k, U.F64)
        b.store(b.fadd(b.load(gbk, typ=U.F64), row_sum(ctx, dt, tk, OH, OW, row)), gbk)
