"""The README's Theano API table is exactly what symcnn/api_table.py generates from the code."""
import os

from symcnn import api_table

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_table_is_the_generated_one():
    with open(README) as f:
        section = api_table.readme_section(f.read())
    assert section is not None, "README.md lost its api-table markers"
    assert section == api_table.markdown(), "the API table is out of date: run python -m symcnn.api_table --write README.md"


def test_resolution():
    assert api_table._resolve("theano.tensor.concatenate") is not None
    assert api_table._resolve("theano.config.floatX") in ("float32", "float64")
    # T.var is the function (as in Theano), though symcnn.tensor.var is also a module's name
    assert callable(api_table._resolve("theano.tensor.var"))
    assert api_table._resolve("theano.tensor.signal.pool") is None  # a module never matches
    assert api_table._resolve("theano.tensor.no_such_thing") is None
    assert api_table._accepts(api_table._resolve("theano.tensor.mean"), ("dtype", "acc_dtype"))
    assert not api_table._accepts(api_table._resolve("theano.tensor.mean"), ("no_such_argument",))
    present = {label: p for _, label, p in api_table.rows()}
    assert present["theano.ifelse.ifelse(condition=, then_branch=, else_branch=, name=)"]
    assert present["theano.scan"] and present["theano.tensor.argsort(a=, axis=, kind=, order=)"]
