"""Modules of the project share only public names: no module imports another module's
underscore names (`from x import _name`) or reaches into one (`module._name`)."""
import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("symcnn", "codegen")


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted):
    """Whether `dotted` names a module or package of the project."""
    if dotted.split(".")[0] not in PACKAGES:
        return False
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _absolute(module, node, is_package):
    """The absolute module named by an ImportFrom node inside `module`."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node):
    """'a.b.c' for an attribute chain of names, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def violations(path):
    """(line, text) for every use of another project module's underscore name in `path`."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = {}   # local name -> project module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if not _is_module(a.name):
                    continue
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    aliases[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node, is_package)
            if source.split(".")[0] not in PACKAGES or source == module:
                continue
            for a in node.names:
                if _private(a.name):
                    found.append((node.lineno, f"from {source} import {a.name}"))
                elif _is_module(f"{source}.{a.name}"):
                    aliases[a.asname or a.name] = f"{source}.{a.name}"
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        dotted = _dotted(node.value)
        if dotted is None:
            continue
        head, _, rest = dotted.partition(".")
        if head not in aliases:
            continue
        target = aliases[head] + ("." + rest if rest else "")
        if _is_module(target) and target != module:
            found.append((node.lineno, f"{dotted}.{node.attr} (module {target})"))
    return sorted(set(found))


def _sources():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_module_uses_another_modules_private_names():
    bad = [f"{path.relative_to(ROOT)}:{line}: {text}" for path in _sources() for line, text in violations(path)]
    assert not bad, "underscore names used across modules:\n" + "\n".join(bad)


def test_checker_finds_private_imports_and_attributes(tmp_path, monkeypatch):
    """The checker itself: it reports both forms, and not a module's own or public names."""
    pkg = tmp_path / "symcnn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("_hidden = 1\nvisible = 2\n")
    (pkg / "b.py").write_text("from .a import _hidden, visible\nfrom . import a as A\n"
                              "x = A._hidden + A.visible + A.__name__.count('a')\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    got = [text for _, text in violations(pkg / "b.py")]
    assert got == ["from symcnn.a import _hidden", "A._hidden (module symcnn.a)"]
    assert violations(pkg / "a.py") == []
