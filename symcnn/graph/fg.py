"""FunctionGraph: the mutable graph that `function` compiles and rewrites edit.

Backed by a networkx DiGraph over Apply nodes (an edge u -> v when v reads an
output of u); `clients` maps each variable to the (node, input index) pairs
reading it. `replace` rewires clients, so rewrites never edit the user's graph.
"""
import networkx as nx

from .basic import clone_graph, graph_inputs, io_toposort


class GraphIntegrityError(AssertionError):
    """A FunctionGraph whose bookkeeping (clients, edges, outputs) disagrees with its nodes."""


class FunctionGraph:
    def __init__(self, inputs, outputs, clone=True):
        self.memo = {}
        if clone:
            outputs, self.memo = clone_graph(list(outputs))
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.graph = nx.DiGraph()
        self.clients = {}
        self._order = None
        for v in self.inputs:
            self.clients.setdefault(v, [])
        for node in io_toposort(self.outputs):
            self._import(node)
        for i, out in enumerate(self.outputs):
            self.clients.setdefault(out, []).append(("output", i))
        # Variables the outputs need that are neither declared inputs, constants nor shared.
        self.free_inputs = [v for v in graph_inputs(self.outputs)
                            if v.owner is None and v not in self.inputs and not _is_free(v)]

    # -- structure -------------------------------------------------------------
    def _import(self, node):
        if node in self.graph:
            return
        for inp in node.inputs:
            if inp.owner is not None and inp.owner not in self.graph:
                self._import(inp.owner)
        self.graph.add_node(node)
        for i, inp in enumerate(node.inputs):
            self.clients.setdefault(inp, []).append((node, i))
            if inp.owner is not None:
                self.graph.add_edge(inp.owner, node)
        for out in node.outputs:
            self.clients.setdefault(out, [])
        self._order = None

    @property
    def apply_nodes(self):
        return set(self.graph.nodes)

    @property
    def variables(self):
        return set(self.clients)

    def toposort(self):
        """Apply nodes in an order where producers come before consumers (stable)."""
        if self._order is None:
            order = {n: i for i, n in enumerate(io_toposort(self.outputs))}
            self._order = list(nx.lexicographical_topological_sort(self.graph, key=lambda n: order.get(n, -1)))
        return self._order

    # -- editing ---------------------------------------------------------------
    def replace(self, var, new_var, reason=None):
        """Make every client of `var` read `new_var` instead."""
        if var is new_var:
            return
        if var.type != new_var.type and not _compatible(var.type, new_var.type):
            raise TypeError(f"replace {var} ({var.type}) by {new_var} ({new_var.type}): types differ"
                            + (f" [{reason}]" if reason else ""))
        # Snapshot the clients first: new_var may itself read var (x -> f(x)).
        clients = list(self.clients.get(var, []))
        if new_var.owner is not None:
            self._import(new_var.owner)
        self.clients.setdefault(new_var, [])
        for client, i in clients:
            if client == "output":
                self.outputs[i] = new_var
            else:
                client.inputs[i] = new_var
                if var.owner is not None and not any(inp in var.owner.outputs for inp in client.inputs):
                    if self.graph.has_edge(var.owner, client):
                        self.graph.remove_edge(var.owner, client)
                if new_var.owner is not None:
                    self.graph.add_edge(new_var.owner, client)
            self.clients[new_var].append((client, i))
        self.clients[var] = [c for c in self.clients.get(var, []) if c not in clients]
        self._prune(var.owner)
        self._order = None

    def replace_all(self, pairs, reason=None):
        for var, new_var in pairs:
            self.replace(var, new_var, reason)

    def _prune(self, node):
        """Drop `node` if nothing reads its outputs any more, then the producers that leaves unread
        (every other node is read: an output depends on it)."""
        todo = [node]
        while todo:
            node = todo.pop()
            if node is None or node not in self.graph or any(self.clients.get(out) for out in node.outputs):
                continue
            self.graph.remove_node(node)
            for inp in node.inputs:
                cl = self.clients.get(inp)
                if cl is not None:
                    self.clients[inp] = [c for c in cl if c[0] is not node]
                todo.append(inp.owner)
            for out in node.outputs:
                self.clients.pop(out, None)

    def check_integrity(self):
        """Raise GraphIntegrityError unless clients, edges and outputs agree with the nodes' inputs."""
        nodes = self.graph
        for node in nodes.nodes:
            for i, inp in enumerate(node.inputs):
                if (node, i) not in self.clients.get(inp, []):
                    raise GraphIntegrityError(f"{inp} does not list client {node}")
                if inp.owner is not None and not nodes.has_edge(inp.owner, node):
                    raise GraphIntegrityError(f"{node} reads {inp}, whose producer {inp.owner} is "
                                              f"{'not linked to it' if inp.owner in nodes else 'not in the graph'}")
        for var, clients in self.clients.items():
            for client, i in clients:
                if client == "output":
                    ok = i < len(self.outputs) and self.outputs[i] is var
                else:
                    ok = client in nodes and i < len(client.inputs) and client.inputs[i] is var
                if not ok:
                    raise GraphIntegrityError(f"{var} lists client {client} (input {i}), which does not read it")
        for i, out in enumerate(self.outputs):
            if ("output", i) not in self.clients.get(out, []):
                raise GraphIntegrityError(f"output {i} ({out}) is not listed as a client of it")

    def to_networkx(self):
        """A copy of the graph with variables as nodes too, labelled for drawing."""
        return networkx_graph(self.toposort())


def _is_free(v):
    from .basic import Constant
    return isinstance(v, Constant) or getattr(v, "is_shared", False)


def _compatible(t1, t2):
    same = getattr(t1, "is_compatible", None)
    return same is not None and same(t2)


def networkx_graph(nodes, outputs=()):
    """A networkx DiGraph of these Apply nodes and their variables (labelled, with kind 'apply'
    or 'variable'), plus the variables in `outputs`."""
    g = nx.DiGraph()
    for node in nodes:
        g.add_node(id(node), label=str(node.op), kind="apply")
        for inp in node.inputs:
            g.add_node(id(inp), label=str(inp), kind="variable")
            g.add_edge(id(inp), id(node))
        for out in node.outputs:
            g.add_node(id(out), label=str(out), kind="variable")
            g.add_edge(id(node), id(out))
    for out in outputs:
        g.add_node(id(out), label=str(out), kind="variable")
    return g
