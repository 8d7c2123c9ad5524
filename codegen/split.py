"""Split one LLVM module (the text codegen.build emits) into modules compiled on their own.

LLVM optimises and emits a module on one core, and llvmlite runs one LLVM call at a time per
process. Cut into parts, a function's module compiles on several cores at once (codegen.jit
sends parts to its helper process), and a part that another module holds too (the forward
kernels of a training step and of its validation function) is compiled once: parts are keyed
by their own text.

Where it cuts: a part is a connected component of the functions' references (direct calls,
addresses, mutable globals they share), with the root's (the entry function's) references to
the jobs it hands to the thread pool left out. Such a job's address escapes into the pool, so
LLVM cannot specialise it for its callers, and the job, everything it calls, and the root are
optimised exactly as in the whole module (tests/codegen/test_split.py compares the optimised
IR of every function). A job whose pool dispatch is dead code (fewer items than
options.min_parallel: the branch folds to a constant) is only called directly; LLVM may then
specialise it, so it stays with the root: `_live_lines` folds those branches as LLVM does.
With options.split_libraries, noinline functions that two or more jobs of a part reach
(the GEMM micro-kernels a Winograd convolution and the dense layers' products call), or that one
job reaches and that are large with all they call (BIG_LINES: a convolution's tile transforms and
kernels, which a training step's forward and its validation's both call), and the root's own large
noinline callees other than its jobs (ROOT_LIBRARY_LINES), with all they call, are cut from their
callers too: they compile once, at the same time as their callers, and once for every module that
holds them. Such a library is optimised as the whole module would optimise it exported (not
specialised to its callers' constant arguments), and its callers see its declaration only (no
attributes LLVM would infer from its body at the call, nor that it never reads an argument);
a library function LLVM could inline into a caller is never cut.
A function called from another part loses its internal linkage and is declared where it is
called; constant globals are copied into each part that reads them, with the metadata nodes
the part uses (numbered in order of use, so that a part reads the same in every module).

`split(ir_text)` returns the parts' texts, or None when the module is one part or text it does
not know how to read (then it compiles whole). `plan` and `part_text` are its two halves, for
codegen.early_parts, which cuts a module still being emitted.
"""
import re

_NAME = re.compile(r'@"((?:[^"\\]|\\.)*)"|@([-a-zA-Z$._][-a-zA-Z$._0-9]*)')
_LINKAGE = ("internal ", "private ")

# Below this many function definitions the whole module is one part (nothing to share or spread).
MIN_FUNCTIONS = 4
# A noinline function a job calls that, with all it calls, has this many lines or more is a library
# of its own: its part compiles beside its caller's, and once for the modules that call it (cold
# compile of train + validate + test, alternating fresh processes, 600 lines of the function alone
# against none: LeNet 0.972x the wall time, allconv 0.941x, cifar_deep 0.946x; their steps
# unchanged). Counting what it calls and 300 lines make the GEMM micro-kernels and the Winograd
# tile transforms libraries even where one job calls them so far, as a later layer's jobs will:
# the parts codegen.early_parts compiles while the module is emitted then stay the same.
BIG_LINES = 300
# A noinline function the root calls directly (a Winograd convolution's per-call filter transform)
# with this many lines or more, with all it calls, is a library of its own too: the root's part,
# the largest, starts last (when the whole module is emitted) and is then the compile's longest
# path (cifar_deep's train entry part 7081 -> 5291 lines).
ROOT_LIBRARY_LINES = 200


def defines(part, name):
    """Whether the module text `part` defines the function `name`."""
    return re.search(r'^define [^@]*@"?' + re.escape(name) + r'"?\(', part, re.M) is not None


def global_names(text):
    """The names of the globals (functions, variables) that IR text refers to or defines."""
    return {a or b for a, b in _NAME.findall(text)}


def _defined_name(line):
    m = _NAME.search(line)
    return (m.group(1) or m.group(2)) if m else None


class Function:
    def __init__(self, name, head, lines):
        self.name, self.head, self.lines = name, head, lines
        self.refs = global_names("\n".join(lines[1:])) - {name}
        after = head[head.rfind(")") + 1:]
        self.noinline = "noinline" in after.split()
        self.internal = any(head.startswith("define " + k) for k in _LINKAGE)

    def text(self, internal):
        head = self.head
        if not internal and self.internal:
            for k in _LINKAGE:
                head = head.replace("define " + k, "define ", 1)
        return "\n".join([head] + self.lines[1:])

    def declaration(self):
        head = self.head[:self.head.rfind(")") + 1]
        for k in _LINKAGE:
            head = head.replace("define " + k, "define ", 1)
        return "declare " + head[len("define "):]


def parse(ir_text, known=None):
    """(header lines, functions, declarations, globals {name: (line, mutable)}, metadata lines),
    or None for text this module does not read."""
    lines = ir_text.split("\n")
    header, functions, declarations, globals_, metadata = [], [], [], {}, {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("define "):
            j = i
            while j < len(lines) and lines[j] != "}":
                j += 1
            if j == len(lines):
                return None
            name = _defined_name(line)
            if name is None:
                return None
            f = known.get("\n".join(lines[i:j + 1])) if known else None
            functions.append(f if f is not None and f.name == name else Function(name, line, lines[i:j + 1]))
            i = j + 1
            continue
        if line.startswith("declare "):
            declarations.append((_defined_name(line), line))
        elif line.startswith("@"):
            name = _defined_name(line)
            rest = line.split("=", 1)[1] if "=" in line else ""
            words = rest.replace(",", " ").split()
            if name is None or not ("global" in words or "constant" in words):
                return None
            if global_names(rest) - {name}:
                return None   # an initializer naming a function or global: not cut
            constant = "constant" in words and any(w in words for w in ("internal", "private"))
            globals_[name] = (line, not constant)
        elif line.startswith("!"):
            m = re.match(r"!(\d+) = (.*)$", line)
            if m is None or "@" in line:
                return None   # named metadata, or metadata naming a function or global: not cut
            metadata[m.group(1)] = m.group(2)
        elif line.startswith(("attributes ", "$", "module asm")):
            return None
        elif line.strip() and not line.startswith((";", "target ", "source_filename")):
            return None
        elif line.strip():
            header.append(line)
        i += 1
    return header, functions, declarations, globals_, metadata


def _address_taken(functions, root=None, live=True):
    """Names of functions some function uses other than as the callee of a call (e.g. passed to
    the thread pool as a job): LLVM cannot specialise such a function for its callers. In the
    root, only the blocks that stay reachable once constant branch conditions are folded count
    (see _live_lines): the thread pool's dispatch below options.min_parallel items is dead code
    that LLVM removes, leaving only a direct call to the job (live=False: all blocks count)."""
    taken = set()
    for f in functions:
        for line in (_live_lines(f) if f.name == root and live else f.lines[1:]):
            if "@" not in line:
                continue
            names = [a or b for a, b in _NAME.findall(line)]
            if not names:
                continue
            k = line.find("call ")
            if k >= 0 and line.find("@", k) >= 0:
                names = names[1:] if _defined_name(line[k:]) == names[0] else names
            taken.update(names)
    return taken


_LABEL = re.compile(r'^(?:"((?:[^"\\]|\\.)*)"|([-a-zA-Z$._0-9]+)):')
_ASSIGN = re.compile(r'^\s+%(?:"((?:[^"\\]|\\.)*)"|([-a-zA-Z$._0-9]+)) = (\w+) +(.*)$')
_TARGET = re.compile(r'label %(?:"((?:[^"\\]|\\.)*)"|([-a-zA-Z$._0-9]+))')
_BRANCH = re.compile(r'^\s+br i1 (\S+), label %(?:"((?:[^"\\]|\\.)*)"|([-a-zA-Z$._0-9]+)), '
                     r'label %(?:"((?:[^"\\]|\\.)*)"|([-a-zA-Z$._0-9]+))')
_FLAGS = {"nuw", "nsw", "exact", "disjoint"}
_BINARY = {
    "add": lambda a, b, w: a + b, "sub": lambda a, b, w: a - b, "mul": lambda a, b, w: a * b,
    "and": lambda a, b, w: a & b, "or": lambda a, b, w: a | b, "xor": lambda a, b, w: a ^ b,
    "udiv": lambda a, b, w: a // b if b else None, "urem": lambda a, b, w: a % b if b else None,
    "sdiv": lambda a, b, w: _sdiv(_signed(a, w), _signed(b, w)) if b else None,
    "shl": lambda a, b, w: a << b if b < w else None,
}
_ICMP = {
    "eq": lambda a, b, w: a == b, "ne": lambda a, b, w: a != b,
    "ult": lambda a, b, w: a < b, "ule": lambda a, b, w: a <= b,
    "ugt": lambda a, b, w: a > b, "uge": lambda a, b, w: a >= b,
    "slt": lambda a, b, w: _signed(a, w) < _signed(b, w), "sle": lambda a, b, w: _signed(a, w) <= _signed(b, w),
    "sgt": lambda a, b, w: _signed(a, w) > _signed(b, w), "sge": lambda a, b, w: _signed(a, w) >= _signed(b, w),
}


_FOLDED = set(_BINARY) | {"icmp", "select"}


def _signed(a, w):
    return a - (1 << w) if a >> (w - 1) else a


def _sdiv(a, b):
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _local(m, k=1):
    return m.group(k) if m.group(k) is not None else m.group(k + 1)


def _live_lines(f):
    """The body lines of `f` in blocks reachable from its first block, a branch on a condition that
    folds to a constant followed one way only. Folded: integer arithmetic, comparisons and selects
    of literals (llvmlite emits them unfolded, e.g. `icmp slt i64 4, 8`), and a value a shape
    check compared with a literal (`icmp ne i64 %d, 48` branching to a block that returns an
    error: past the check, %d is 48), as LLVM folds them."""
    blocks, order, current = {}, [], ""
    for line in f.lines[1:]:
        if line[:1] not in (" ", "\t", "{", "}", ""):
            m = _LABEL.match(line)
            if m:
                current = _local(m)
                order.append(current)
                blocks[current] = []
                continue
        if line[:1] == " ":
            if current not in blocks:
                order.append(current)
                blocks[current] = []
            blocks[current].append(line)
    if not order:
        return f.lines[1:]
    known, compares, defined, late = {}, {}, set(), []

    def value(tok, width):
        if tok[:1] == "%":
            name = tok[1:].strip('"')
            if name not in defined:
                late.append(name)
            return known.get(name)
        if tok in ("true", "false"):
            return int(tok == "true")
        try:
            return int(tok) % (1 << width)
        except ValueError:
            return None

    def returns(name):
        lines = blocks.get(name, ())
        return bool(lines) and lines[-1].lstrip().startswith("ret ")

    for sweep in range(2):   # a second sweep if a value was used before (in text order) its definition
        if sweep and not late:
            break
        del late[:]
        for name in order:
            for line in blocks[name]:
                if line.startswith("  br i1 "):
                    m = _BRANCH.match(line)
                    cmp = compares.get(m.group(1)[1:].strip('"')) if m and m.group(1)[:1] == "%" else None
                    if cmp is not None:
                        pred, w, a, b = cmp
                        bad = _local(m, 2) if pred == "ne" else _local(m, 4)
                        if returns(bad):   # past the check, the two are equal
                            x, y = value(a, w), value(b, w)
                            if x is None and y is not None and a[:1] == "%":
                                known[a[1:].strip('"')] = y
                            elif y is None and x is not None and b[:1] == "%":
                                known[b[1:].strip('"')] = x
                    continue
                k = line.find(" = ")
                if k < 0:
                    continue
                defined.add(line[3:k].strip('"'))
                if line[k + 3:line.find(" ", k + 3)] not in _FOLDED:
                    continue
                m = _ASSIGN.match(line)
                if m is None:
                    continue
                op, rest = m.group(3), m.group(4).replace(",", " ").split()
                while rest and rest[0] in _FLAGS:
                    rest = rest[1:]
                result, target = None, _local(m)
                if op in _BINARY and len(rest) == 3 and rest[0][:1] == "i" and rest[0][1:].isdigit():
                    w = int(rest[0][1:])
                    a, b = value(rest[1], w), value(rest[2], w)
                    if a is not None and b is not None:
                        r = _BINARY[op](a, b, w)
                        result = None if r is None else r % (1 << w)
                    elif op == "or" and (1 << w) - 1 in (a, b):    # x | all ones, x & 0, x * 0
                        result = (1 << w) - 1
                    elif op in ("and", "mul") and 0 in (a, b):
                        result = 0
                elif op == "icmp" and len(rest) == 4 and rest[0] in _ICMP and rest[1][1:].isdigit():
                    w = int(rest[1][1:])
                    if rest[0] in ("ne", "eq"):
                        compares[target] = (rest[0], w, rest[2], rest[3])
                    a, b = value(rest[2], w), value(rest[3], w)
                    if a is not None and b is not None:
                        result = int(_ICMP[rest[0]](a, b, w))
                elif op == "select" and len(rest) == 6 and rest[0] == "i1" and rest[2][1:].isdigit():
                    c = value(rest[1], 1)
                    if c is not None:
                        result = value(rest[3] if c else rest[5], int(rest[2][1:]))
                if result is not None:
                    known[target] = result
    live, todo = {order[0]}, [order[0]]
    while todo:
        lines = blocks[todo.pop()]
        term = lines[-1] if lines else ""
        m = _BRANCH.match(term)
        c = value(m.group(1), 1) if m else None
        if c is not None:
            succ = [_local(m, 2) if c else _local(m, 4)]
        else:
            succ = [_local(t) for t in _TARGET.finditer(term)]
        for t in succ:
            if t in blocks and t not in live:
                live.add(t)
                todo.append(t)
    return [line for name in order if name in live for line in blocks[name]]


def split(ir_text, root="symcnn_entry", known=None):
    """The parts' texts (see the module's doc), or None. known: {function text: Function} of
    functions parsed before (codegen.early_parts), not parsed again."""
    parsed = parse(ir_text, known)
    if parsed is None:
        return None
    header, functions, declarations, globals_, metadata = parsed
    by_name = {f.name: f for f in functions}
    if len(functions) < MIN_FUNCTIONS or root not in by_name:
        return None
    taken = _address_taken(functions, root) & set(by_name)
    planned = plan(functions, by_name, globals_, root, taken, _address_taken([by_name[root]], root, live=False))
    if planned is None:
        return None
    members, exported = planned
    return [part_text(header, own, exported, by_name, declarations, globals_, metadata) for own in members.values()]


def plan(functions, by_name, globals_, root, taken, jobs=()):
    """({representative: [functions]}, exported names): the parts of a parsed module whose root
    hands the functions `taken` to the thread pool (of its `jobs`, the others it calls directly,
    as the dispatch is dead code); None when it is one part."""
    mutable = {g for g, (_, m) in globals_.items() if m}
    # parts: the connected components of the functions' references (calls, addresses, shared
    # mutable globals), without the root's references to address-taken functions (the jobs it
    # hands to the thread pool): cut there, no function's code depends on the cut
    members = _components(functions, by_name, mutable, lambda f, r: f.name == root and r in taken)
    # then, with options.split_libraries, the calls of two or more jobs of a part into the same
    # functions (kernels sharing the GEMM micro-kernels): those functions make parts of their own
    shared = _shared_callees(members, by_name, taken, root, jobs) if _cut_libraries() else set()
    if shared:
        members = _components(functions, by_name, mutable,
                              lambda f, r: (f.name == root and r in taken) or (r in shared and f.name not in shared))
    if len(members) < 2:
        return None
    part_of = {f.name: root_ for root_, fs in members.items() for f in fs}
    exported = {r for f in functions for r in f.refs if r in part_of and part_of[r] != part_of[f.name]}
    return members, exported


def part_text(header, own, exported, by_name, declarations, globals_, metadata):
    """The module text of the part holding the functions `own`."""
    refs = set().union(*(f.refs for f in own))
    defined = {f.name for f in own}
    text = list(header)
    text.extend(line for name, (line, _) in globals_.items() if name in refs)
    text.append("")
    for f in own:
        text.append(f.text(internal=f.name not in exported))
        text.append("")
    text.extend(by_name[name].declaration() for name in sorted(refs - defined) if name in by_name)
    text.extend(line for name, line in declarations if name in refs)
    text.append("")
    return _with_metadata("\n".join(text), metadata) + "\n"


def _components(functions, by_name, mutable, cut):
    """{representative: [functions]}: the connected components of the functions' references
    (calls, addresses, shared mutable globals), without the references f -> r where cut(f, r)."""
    parent = {f.name: f.name for f in functions}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    owner = {}
    for f in functions:
        for r in f.refs:
            if r in by_name:
                if not cut(f, r):
                    union(f.name, r)
            elif r in mutable:
                if r in owner:
                    union(f.name, owner[r])
                else:
                    owner[r] = f.name
    members = {}
    for f in functions:
        members.setdefault(find(f.name), []).append(f)
    return members


def _shared_callees(members, by_name, taken, root, jobs=()):
    """The functions that two or more jobs (functions the root hands to the thread pool) of one
    part reach through their calls (the GEMM micro-kernels that a Winograd convolution and the
    dense layers' products call, for example), and the large ones one job reaches. Cut from their
    callers, they compile once for all of them, and once for every module calling them (they
    read the same in every module)."""
    shared = set()
    for fs in members.values():
        if any(f.name == root for f in fs):
            if not ROOT_LIBRARY_LINES:
                continue
            # the root's own large noinline callees (per-call filter transforms; not the jobs it
            # calls directly: LLVM may specialise those for that one call, as in the whole module)
            seeds = {r for r in by_name[root].refs if r in by_name and r not in taken and r not in jobs
                     and by_name[r].noinline and _closure_lines(r, by_name) >= ROOT_LIBRARY_LINES}
        else:
            jobs = [f.name for f in fs if f.name in taken]
            if not jobs:
                continue
            reached = {}
            for job in jobs:
                for name in callees(job, by_name):
                    reached[name] = reached.get(name, 0) + 1
            # the noinline functions they share, with everything those call; LLVM must not be able to
            # inline a cut function into a caller left outside (as it would in the whole module)
            seeds = {name for name, n in reached.items() if (n >= 2 or _closure_lines(name, by_name) >= BIG_LINES)
                     and name not in taken and by_name[name].noinline}
        while seeds:
            closure = {name: callees(name, by_name) for name in seeds}
            cut = set().union(*closure.values())
            inlinable = {r for f in fs if f.name not in cut for r in f.refs if r in cut and not by_name[r].noinline}
            if not inlinable:
                shared |= cut
                break
            seeds = {name for name in seeds if not closure[name] & inlinable}
    return shared


def _closure_lines(name, by_name):
    """The lines of `name` and of every function it reaches."""
    return sum(len(by_name[n].lines) for n in callees(name, by_name))


def callees(name, by_name):
    """`name` and every function it reaches through its references."""
    seen, todo = {name}, [name]
    while todo:
        for r in by_name[todo.pop()].refs:
            if r in by_name and r not in seen:
                seen.add(r)
                todo.append(r)
    return seen


def _cut_libraries():
    try:
        from .options import options
    except ImportError:   # loaded on its own
        return True
    return options.split_libraries


_MD_REF = re.compile(r"!(\d+)\b")


def _with_metadata(text, metadata):
    """`text` with the metadata nodes it uses, numbered in the order of first use: a kernel's
    part reads the same in every module that holds it, whatever the other parts numbered."""
    numbers = {}
    todo = _MD_REF.findall(text)
    order = []
    while todo:
        n = todo.pop(0)
        if n in numbers:
            continue
        numbers[n] = str(len(numbers))
        order.append(n)
        todo.extend(_MD_REF.findall(metadata.get(n, "")))
    rename = lambda m: "!" + numbers[m.group(1)]
    lines = [_MD_REF.sub(rename, text), ""]
    lines.extend(f"!{numbers[n]} = " + _MD_REF.sub(rename, metadata[n]) for n in order if n in metadata)
    return "\n".join(lines)
