"""README's Layout section names every module of the two packages (one line says its job)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _layout_section():
    text = (ROOT / "README.md").read_text()
    start = text.index("## Layout\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_every_module_is_in_the_layout_section():
    section = _layout_section()
    named = set(re.findall(r"([\w/]+\.py)", section))
    basenames = {n.rsplit("/", 1)[-1] for n in named}
    missing = []
    for package in ("symcnn", "codegen"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py" and path.parent.name != "symcnn":
                continue
            rel = path.relative_to(ROOT / package).as_posix()
            if rel not in named and path.name not in basenames:
                missing.append(f"{package}/{rel}")
    assert not missing, "README's Layout section does not name: " + ", ".join(missing)


def test_every_named_module_exists():
    section = _layout_section()
    names = set(re.findall(r"`([\w/]+\.py)`", section))
    files = {p.relative_to(ROOT / pkg).as_posix() for pkg in ("symcnn", "codegen")
             for p in (ROOT / pkg).rglob("*.py")}
    files |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "benchmarks").glob("*.py")}
    basenames = {f.rsplit("/", 1)[-1] for f in files}
    gone = [n for n in names if n not in files and n not in basenames and not (ROOT / n).exists()]
    assert not gone, "README's Layout section names modules that do not exist: " + ", ".join(sorted(gone))
