"""The memory plan of one compiled function.

Which variables are views of others (no buffer), which own a buffer, and which
buffer ("slot") each owner uses: slots are reused across nodes once the value
they hold (and every view of it) is dead. Slot buffers live as long as the
compiled function and only grow, so steady-state calls allocate nothing.
"""
from symcnn.graph.basic import Constant
from symcnn.rewrite.inplace import may_update_in_place
from symcnn.tensor.elemwise import Elemwise


class Plan:
    def __init__(self, fgraph, registry, updates=()):
        self.fgraph = fgraph
        order = fgraph.toposort()
        self.base = {}       # var -> the variable owning the storage it reads
        self.contiguous = {}
        self.slot = {}       # owning var -> slot index
        self.n_slots = 0
        self.slot_bytes_hint = {}
        for v in fgraph.inputs:
            self.base[v] = v
            self.contiguous[v] = True
        for node in order:
            for v in node.inputs:
                if v not in self.base:  # constants
                    self.base[v] = v
                    self.contiguous[v] = True
            _, view = registry.lookup(node.op)
            is_view, contig = (False, True)
            if view is not None:
                is_view, contig = view(node, [self.contiguous[i] for i in node.inputs])
            for out in node.outputs:
                self.base[out] = self.base[node.inputs[0]] if is_view else out
                self.contiguous[out] = contig if is_view else True

        # SGD-style updates computed by an elementwise node are written straight into the
        # shared variable's storage; such nodes run last, after every other reader of it.
        self.inplace_update = self._inplace_updates(order, updates)
        for out, target in self.inplace_update.items():
            self.base[out] = target
        late = [out.owner for out in self.inplace_update]
        order = [n for n in order if n not in late] + late
        self.order = order

        # Outputs that are not computed into their own buffer get a copy at the end,
        # so results and updates never alias inputs, shared storage or each other.
        self.output_copy = {}
        seen = set()
        for k, out in enumerate(fgraph.outputs):
            b = self.base.get(out, out)
            if out in self.inplace_update:
                pass
            elif b is not out or out.owner is None or isinstance(out, Constant) or out in seen:
                self.output_copy[k] = None  # slot assigned below
            seen.add(out)

        last = {}
        for k, node in enumerate(order):
            for v in node.inputs:
                last[self.base[v]] = k
        end = len(order)
        for out in fgraph.outputs:
            last[self.base.get(out, out)] = end

        free = []
        self.overwrites = {}  # output -> the dead input whose buffer it reuses
        for k, node in enumerate(order):
            for out in node.outputs:
                if self.base[out] is out:
                    dead = self._dead_input(node, out, k, last)
                    if dead is not None:
                        self.slot[out] = self.slot[dead]
                        self.overwrites[out] = dead
                        last[dead] = -1  # its buffer now belongs to `out`
                    else:
                        self.slot[out] = free.pop() if free else self._new()
            for out in node.outputs:
                if self.base[out] is out and last.get(out, k) <= k:
                    free.append(self.slot[out])
            for v in dict.fromkeys(node.inputs):
                owner = self.base[v]
                if owner in self.slot and last.get(owner) == k and owner.owner is not None:
                    if self.slot[owner] not in free:
                        free.append(self.slot[owner])
        for k in self.output_copy:
            self.output_copy[k] = self._new()

    def _inplace_updates(self, order, updates):
        """{update value: shared input} for updates an Elemwise node can write in place."""
        outs, ins = self.fgraph.outputs, self.fgraph.inputs
        chosen = {}
        for inp, k in updates:
            out, target = outs[k], ins[inp]
            node = out.owner
            if node is None or not may_update_in_place(self.fgraph, node, target):
                continue
            # Reading the target through a view (x.T, a slice) while overwriting it would be wrong,
            # and so would returning its old value (outputs are copied out after all nodes ran).
            if any(self.base.get(i) is target and i is not target for i in node.inputs):
                continue
            if any(self.base.get(o, o) is target for o in outs):
                continue
            chosen[out] = target
        # No in-place node may read another's target: they all run at the end, in some order.
        targets = set(chosen.values())
        return {out: t for out, t in chosen.items()
                if not any(self.base.get(i) in targets - {t} for i in out.owner.inputs)}

    def _dead_input(self, node, out, k, last):
        """An input buffer an elementwise node may overwrite: owned, used for the last time
        here, with the output's layout and dtype, and read by no other input view."""
        if not isinstance(node.op, Elemwise):
            return None
        for v in node.inputs:
            if (self.base.get(v) is v and v in self.slot and v.owner is not None and last.get(v) == k
                    and v.type.broadcastable == out.type.broadcastable and v.dtype == out.dtype
                    and v not in self.fgraph.outputs
                    and all(self.base.get(i) is not v or i is v for i in node.inputs)):
                return v
        return None

    def _new(self):
        self.n_slots += 1
        return self.n_slots - 1

    def new_slot(self):
        """A private buffer for one kernel's scratch space."""
        return self._new()
