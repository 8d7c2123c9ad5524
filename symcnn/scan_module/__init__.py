"""Loops in a graph: Theano's scan, map, reduce, foldl, foldr and until.

`symcnn.scan(fn, sequences=, outputs_info=, non_sequences=, n_steps=, truncate_gradient=,
go_backwards=, name=, strict=)` calls `fn` once on placeholder variables (one per sequence tap,
per output tap, per non-sequence) to get the step graph, then builds one Scan node
(scan_op.py) holding that graph. Everything the step reads from outside (shared variables,
tensors it closes over) becomes an input of the node; every shared variable the step updates
(its returned updates, and the random streams it draws from, through their default updates)
becomes a *carry*: a loop-carried value whose final value scan returns as that variable's update.

Taps. A sequence with taps [-1, 0, 1] becomes three outer sequences, slices of the same array
shifted by one row each (views, no copy), so the op itself only ever reads row t of a sequence
(row n-1-t when going backwards). An output with taps [-2, -1] has a *state buffer* of L + n rows
(L = 2, the largest look-back): its first L rows are the initial values, step t writes row L + t
and reads its taps at rows L + t + k. scan returns rows L.. of it. Outputs that are not fed back
(outputs_info None) are written one row per step into their own buffer. A while loop (`until`)
stops after the first step whose condition holds; its outputs then have only the rows computed.

Memory. The reference implementation (perform) runs the inner graph with the reference linker
once per step. In native modes (the native backend's scan lowering) the loop runs inside the function's one
LLVM entry point: the inner graph is copied, rewritten like any graph and planned by the same
memory planner; the inner plan's buffers get slot numbers of the outer function, so they are
allocated on the first step, reused by every later step and every later call, and freed with the
function. The state buffers and per-step output buffers are the Scan node's outputs in the outer
plan: allocated once for all steps. Per step the inner inputs are views: a sequence's row, the
state buffer's row at t + tap, the carry buffer; an inner result that a kernel computes into a
buffer of its own (elementwise, a product, a join) is computed straight into the state buffer's
row L + t or the per-step output's row, and the others are copied there (or into the carry). The
right operand of a product in the step that is a non-sequence (an RNN's recurrent weight) is
packed into the GEMM's panel layout once, before the loop. No Python runs per step.

Gradient (scan_grad.py). The gradient of a Scan is another Scan that runs backwards over the
saved state buffers: it reads the forward sequences and the state rows of every tap at step t as
reversed sequences, together with the gradients arriving at the outputs of step t; it rebuilds
the step graph and takes its vector-Jacobian product (symcnn.grad with known_grads); it carries a
window of L rows per state holding the gradient already collected for the rows later steps read,
and one accumulator per non-sequence; the sequences' gradients are its per-step outputs.
truncate_gradient=k runs that loop over the last k steps only. Being a Scan itself, the gradient
loop runs natively too, and a gradient inside a step (T.grad in fn) and scans inside scans work
the same way. Gradients do not flow through carries (a shared variable's update inside the step).

Rewrites (scan_rewrites.py) then edit the outer graph, before fusion: unused outputs and inputs
go; computations of non-sequences only move before the loop; a carry that only accumulates
dot(a_t, b_t) or sum(b_t) becomes one dot (or sum) of the stacked per-step values after the loop
(Theano's scan_pushout_add), which is how a weight's gradient becomes one GEMM over all T*B rows;
the gradient loop reads the products its forward loop computed (the forward loop writes them as
per-step outputs) instead of recomputing them. (The gradient of a sequence the loop read in full,
n_steps rows of n_steps, is built without padding it into zeros.)
"""
from .scan import scan  # noqa: F401
from .scan_op import Scan, ScanInfo  # noqa: F401
from .scan_utils import until  # noqa: F401
from .scan_views import foldl, foldr, map, reduce  # noqa: F401
