"""The memory plan of one compiled function.

Which variables are views of others (no buffer), which own a buffer, and which
buffer ("slot") each owner uses: slots are reused across nodes once the value
they hold (and every view of it) is dead. Slot buffers live as long as the
compiled function and only grow, so steady-state calls allocate nothing.
"""
from symcnn.graph.basic import Constant


class Plan:
    def __init__(self, fgraph, registry):
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

        # Outputs that are not computed into their own buffer get a copy at the end,
        # so results and updates never alias inputs, shared storage or each other.
        self.output_copy = {}
        seen = set()
        for k, out in enumerate(fgraph.outputs):
            b = self.base.get(out, out)
            if b is not out or out.owner is None or isinstance(out, Constant) or out in seen:
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
        for k, node in enumerate(order):
            for out in node.outputs:
                if self.base[out] is out:
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

    def _new(self):
        self.n_slots += 1
        return self.n_slots - 1

    def new_slot(self):
        """A private buffer for one kernel's scratch space."""
        return self._new()
