"""codegen.redundant_checks: a check that a dominating check of the same comparison already made
goes; every other check stays, and bad input fails as before."""
import ctypes
import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llvmlite import binding as llvm
from llvmlite import ir

import symcnn
import symcnn.tensor as T
from codegen import build, jit
from codegen import irutil as U
from codegen.redundant_checks import drop_dominated_checks
from symcnn.tensor.nnet import conv2d

from ..helpers import check_same_error, entry_function_ir

I64 = ir.IntType(64)


def _function():
    """f(a, b, c): a check of a != 3 at the top, then a diamond on c; returns the module, the
    function, its fail function and an emit_check(builder, cond) helper."""
    m = ir.Module(name="checks")
    fail = ir.Function(m, ir.FunctionType(ir.VoidType(), [I64]), name="fail")
    f = ir.Function(m, ir.FunctionType(ir.IntType(32), [I64, I64, ir.IntType(1)]), name="f")
    b = ir.IRBuilder(f.append_basic_block("entry"))

    def check(cond, code):
        bad, ok = b.append_basic_block("fail"), b.append_basic_block("ok")
        b.cbranch(cond, bad, ok)
        b.position_at_end(bad)
        b.call(fail, [ir.Constant(I64, code)])
        b.ret(ir.Constant(ir.IntType(32), code))
        b.position_at_end(ok)
    return m, f, fail, b, check


def _fail_calls(f, fail):
    return sum(1 for blk in f.blocks for ins in blk.instructions
               if isinstance(ins, ir.CallInstr) and ins.callee is fail)


def test_a_check_dominated_by_the_same_comparison_goes_and_others_stay():
    m, f, fail, b, check = _function()
    a, bv, c = f.args
    three = ir.Constant(I64, 3)
    check(b.icmp_signed("!=", a, three), 1)                 # kept: the first
    check(b.icmp_signed("!=", three, a), 2)                 # the same comparison, operands swapped
    with b.if_else(c) as (then, otherwise):
        with then:
            check(b.icmp_signed("!=", a, three), 3)         # dominated by the first
            check(b.icmp_signed("!=", bv, three), 4)        # kept: new
        with otherwise:
            check(b.icmp_signed("<", bv, three), 5)         # kept: another predicate
    check(b.icmp_signed("!=", bv, three), 6)                # kept: check 4 ran on one path only
    check(b.icmp_signed("!=", bv, three), 7)                # dominated by check 6
    check(b.icmp_signed("!=", a, ir.Constant(I64, 4)), 8)   # kept: another constant
    b.ret(ir.Constant(ir.IntType(32), 0))
    assert _fail_calls(f, fail) == 8
    assert drop_dominated_checks(f, fail) == 3
    assert _fail_calls(f, fail) == 5
    codes = sorted(ins.args[0].constant for blk in f.blocks for ins in blk.instructions
                   if isinstance(ins, ir.CallInstr) and ins.callee is fail)
    assert codes == [1, 4, 5, 6, 8]
    llvm.parse_assembly(str(m)).verify()


def test_without_a_fail_function_nothing_changes():
    m, f, fail, b, check = _function()
    check(b.icmp_signed("!=", f.args[0], ir.Constant(I64, 1)), 1)
    check(b.icmp_signed("!=", f.args[0], ir.Constant(I64, 1)), 2)
    b.ret(ir.Constant(ir.IntType(32), 0))
    assert drop_dominated_checks(f, None) == 0 and _fail_calls(f, fail) == 2


def _conv_graph():
    x, w = T.tensor4("x"), T.tensor4("w")
    shapes = dict(input_shape=(2, 3, 8, 8), filter_shape=(4, 3, 3, 3))
    y = T.tanh(conv2d(x, w, **shapes))
    cost = (y ** 2).sum() + (conv2d(x, w, border_mode="half", **shapes) ** 2).sum()
    return [x, w], [cost] + T.grad(cost, [x, w])


def _entry_fail_calls(spec):
    return entry_function_ir(spec.ir_text).count('call void @"symcnn_fail"')


def test_repeated_shape_checks_of_a_training_graph_go(monkeypatch):
    inputs, outputs = _conv_graph()
    fg = symcnn.function(inputs, outputs, mode="reference").fgraph
    with_pass = _entry_fail_calls(build.build_module(fg, []))
    monkeypatch.setattr(build, "PASSES", tuple(p for p in build.PASSES if p[0] != "repeated_checks"))
    without = _entry_fail_calls(build.build_module(fg, []))
    assert with_pass < without


@pytest.mark.parametrize("bad", [(2, 3, 9, 8), (2, 2, 8, 8), (3, 3, 8, 8)])
def test_bad_input_fails_with_the_same_message_as_with_every_check(bad, monkeypatch):
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "none")
    inputs, outputs = _conv_graph()
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(bad).astype("float32"), rng.standard_normal((4, 3, 3, 3)).astype("float32")]
    msg, _ = check_same_error(inputs, outputs, values, ValueError)
    monkeypatch.setattr(build, "PASSES", tuple(p for p in build.PASSES if p[0] != "repeated_checks"))
    every_check, _ = check_same_error(inputs, outputs, values, ValueError)
    assert msg == every_check


# Random programs of checks on a function's arguments, nested in branches and loops: the function
# with the dominated checks dropped returns what the whole one does on every input (both run natively).
_PREDS = ("!=", "==", "<", ">")


def _statements(depth):
    check = st.tuples(st.just("check"), st.sampled_from(_PREDS), st.integers(0, 2), st.integers(0, 3))
    if depth == 0:
        return st.lists(check, min_size=1, max_size=4)
    inner = _statements(depth - 1)
    branch = st.tuples(st.just("if"), st.integers(0, 2), st.integers(0, 3), inner, inner)
    loop = st.tuples(st.just("loop"), st.integers(1, 3), inner)
    return st.lists(st.one_of(check, check, branch, loop), min_size=1, max_size=5)


def _program_module(program):
    """f(a0, a1, a2) -> i32: the program's checks in order, each with a code of its own (returned
    after a call of fail(code)); 0 if none fails."""
    m = ir.Module(name="program")
    m.triple, m.data_layout = jit.module_header()
    fail = ir.Function(m, ir.FunctionType(ir.VoidType(), [I64]), name="fail")
    fail.linkage = "internal"
    fb = ir.IRBuilder(fail.append_basic_block())
    fb.ret_void()
    f = ir.Function(m, ir.FunctionType(ir.IntType(32), [I64] * 3), name="f")
    b = ir.IRBuilder(f.append_basic_block("entry"))
    codes = iter(range(1, 10 ** 6))

    def emit(stmts):
        for s in stmts:
            if s[0] == "check":
                _, pred, arg, const = s
                code = next(codes)
                bad, ok = b.append_basic_block("fail"), b.append_basic_block("ok")
                b.cbranch(b.icmp_signed(pred, f.args[arg], ir.Constant(I64, const)), bad, ok)
                b.position_at_end(bad)
                b.call(fail, [ir.Constant(I64, code)])
                b.ret(ir.Constant(ir.IntType(32), code))
                b.position_at_end(ok)
            elif s[0] == "if":
                _, arg, const, then_, else_ = s
                with b.if_else(b.icmp_signed("<", f.args[arg], ir.Constant(I64, const))) as (then, otherwise):
                    with then:
                        emit(then_)
                    with otherwise:
                        emit(else_)
            else:
                with U.for_range(b, s[1], name="l"):
                    emit(s[2])
    emit(program)
    b.ret(ir.Constant(ir.IntType(32), 0))
    return m, f, fail


@settings(max_examples=int(os.environ.get("SYMCNN_FUZZ_EXAMPLES", "40")), derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_statements(2))
def test_dropping_dominated_checks_keeps_every_outcome_of_random_programs(program):
    whole, _, _ = _program_module(program)
    pruned, f, fail = _program_module(program)
    drop_dominated_checks(f, fail)
    funcs = []
    for m in (whole, pruned):
        code = jit.CompiledModule(str(m), use_cache=False)
        funcs.append(ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)(code.address("f")))
        funcs[-1].keep = code
    for args in itertools.product(range(-1, 5), repeat=3):
        assert funcs[0](*args) == funcs[1](*args), (args, program)
