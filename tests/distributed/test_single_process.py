"""symcnn.distributed in a process not started by mpirun: size 1, collectives are identities."""
import os
import subprocess
import sys

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn import distributed as D
from tests.helpers import check_grad, check_native_vs_reference, rand

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_rank_and_size_without_mpirun():
    if D.launched_by_mpi():
        pytest.skip("this process was started by an MPI launcher")
    assert (D.rank(), D.size()) == (0, 1)


@pytest.mark.parametrize("mode", ["native", "reference"])
def test_collectives_are_identities(mode):
    x, y = T.fmatrix("x"), T.lvector("y")
    xv, yv = rand((3, 4), "float32"), np.arange(5)
    out = symcnn.function([x, y], [D.psum(x), D.pmean(x), *D.psum([x, y, x * 2])], mode=mode)(xv, yv)
    for got, want in zip(out, [xv, xv, xv, yv, 2 * xv]):
        np.testing.assert_array_equal(got, want)


def test_psum_native_matches_reference_on_random_shapes():
    rng = np.random.RandomState(0)
    for shape in [(1,), (7,), (3, 5), (2, 3, 4)]:
        a = T.TensorType("float64", shape=(None,) * len(shape))("a")
        b = T.fvector("b")
        check_native_vs_reference([a, b], D.psum([a.T * 3, b]),
                                  [rng.randn(*shape), rng.randn(4).astype("float32")])


def test_psum_and_pmean_gradients():
    check_grad(lambda x: T.sum(D.psum(x) ** 2), [(3, 4)])
    check_grad(lambda x, w: T.sum(D.pmean([x, w])[0] * D.pmean([x, w])[1]), [(5,), (5,)])
    check_grad(lambda x: T.sum(D.psum(x) ** 2), [(3, 4)], mode="native")


def test_psum_rejects_bad_dtype():
    with pytest.raises(TypeError, match="psum: input 0 .*uint8"):
        D.psum(T.TensorType("uint8", shape=(None,))("u"))


def test_shard_splits_rows_and_minibatches():
    data = np.arange(20).reshape(10, 2)
    parts = [D.shard(data, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 4]
    np.testing.assert_array_equal(np.concatenate(parts), data)
    # per minibatch of 4: rank 0 gets rows 0-1 of each minibatch, rank 1 rows 2-3; the 2 left over are dropped
    a, b = D.shard(data, 0, 2, batch_size=4), D.shard(data, 1, 2, batch_size=4)
    np.testing.assert_array_equal(a[:, 0], [0, 2, 8, 10])
    np.testing.assert_array_equal(b[:, 0], [4, 6, 12, 14])
    shared = D.shard(symcnn.shared(data.astype("float32")), 1, 2, batch_size=4)
    np.testing.assert_array_equal(shared.get_value(), b)
    with pytest.raises(ValueError, match="rank=2"):
        D.shard(data, 2, 2)


def test_without_mpi4py_import_works_and_the_api_says_what_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import symcnn, symcnn.distributed as D\n"
            "assert D.size() == 1\n"
            "import os; os.environ['OMPI_COMM_WORLD_SIZE'] = '2'; D.comm._state.clear()\n"
            "try:\n    D.size()\nexcept D.DistributedUnavailable as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                                                            "PMI_RANK", "MPI_LOCALNRANKS")}
    env["PYTHONPATH"] = REPO
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'symcnn[mpi]'" in out.stdout
