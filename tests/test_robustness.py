"""No silent wrong answer, no lost result: singular systems, output folders, result sets written
as one, concurrent runs, bounded reads, and errors that name their cause."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from matgrad_jax import InputError, fit, solve_batch
from matgrad_jax.io import (
    DEFAULT_MAX_ARRAY_BYTES,
    OutputLock,
    check_out_dir,
    fingerprint,
    load_arrays,
    write_result_set,
)
from matgrad_jax.problems import channel

MATGRAD = [sys.executable, "-m", "matgrad_jax"]


def _data(n=7, m=5, k=6, q=9, seed=0, **kw):
    d = channel.make_data(n, m, k, q, noise=0.01, seed=seed)
    d = {k_: np.asarray(d[k_]) for k_ in channel.DATA_NAMES}
    d.update(kw)
    return d


def _run(*args, cwd=None, timeout=300):
    return subprocess.run(MATGRAD + list(args), capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


# -- singular systems ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["exact", "alternating", "cg", "lbfgs"])
def test_singular_g_is_refused_before_solving(method):
    d = _data(10, 6, 2, 9)  # k = 2 < m = 6
    problem = channel.Problem(*(d[k] for k in channel.DATA_NAMES))
    assert "min(k, q) = 2 < m = 6" in problem.singular
    with pytest.raises(InputError, match=r"G = K_c K_cᴴ is singular.*pass ridge > 0"):
        fit(problem, method=method)
    ok = fit(channel.Problem(*(d[k] for k in channel.DATA_NAMES), ridge=1e-3), method=method,
             max_iters=20000)
    assert np.isfinite(float(ok.value))


def test_numerically_singular_g_is_refused():
    d = _data(P=np.zeros((10, 6)))  # k >= m, but P = 0 makes G = 0
    problem = channel.Problem(*(d[k] for k in channel.DATA_NAMES))
    assert "numerically singular" in problem.singular
    with pytest.raises(InputError, match="numerically singular"):
        fit(problem, method="exact")


def test_a_non_finite_result_is_never_converged():
    d = _data(P=np.zeros((10, 6)))
    stats = channel.Problem(*(d[k] for k in channel.DATA_NAMES)).stats
    blind = channel.Problem.from_stats(stats)  # rebuilt from statistics: no check ran
    res = fit(blind, method="exact")
    assert not np.isfinite(float(res.value)) or not np.all(np.isfinite(res.params[0]))
    assert not bool(res.converged) and res.reason == "non-finite value"


def test_solve_batch_singular_and_non_finite():
    ds = [_data(10, 6, 2, 9, seed=s) for s in range(3)]
    stacked = {k: np.stack([d[k] for d in ds]) for k in channel.DATA_NAMES}
    with pytest.raises(InputError, match="singular in every problem"):
        solve_batch(stacked)
    ds = [_data(seed=s) for s in range(3)]
    ds[1]["P"] = np.zeros_like(ds[1]["P"])
    stacked = {k: np.stack([d[k] for d in ds]) for k in channel.DATA_NAMES}
    with pytest.raises(InputError, match=r"problem\(s\) 1: the solve ended non-finite"):
        solve_batch(stacked)
    res = solve_batch(stacked, full_result=True)
    assert list(np.asarray(res.converged)) == [True, False, True]
    assert res.reason[1] == "non-finite value"


def test_cli_singular_data_exit_2_and_nothing_written(tmp_path, capsys):
    from matgrad_jax import cli  # in this process: the exit codes and stderr are main's own

    data = tmp_path / "d.npz"
    assert cli.main(["example", "--out", str(data), "--m", "6", "--k", "2"]) == 0
    capsys.readouterr()
    for method in ("exact", "alternating"):
        rc = cli.main(["fit", str(data), "--out", str(tmp_path / "o"), "--method", method])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1, err
        assert "singular" in err and "--ridge" in err
        assert not (tmp_path / "o").exists()
    assert cli.main(["fit", str(data), "--out", str(tmp_path / "o"), "--ridge", "1e-3"]) == 0


def test_cli_non_finite_fit_exits_3_writing_nothing(tmp_path, monkeypatch, capsys):
    import importlib

    from matgrad_jax import cli

    fit_module = importlib.import_module("matgrad_jax.fit")  # the module, not the function

    data = tmp_path / "d.npz"
    np.savez(data, **_data())
    real = fit_module.fit_chunked

    def nan_fit(*a, **kw):
        res = real(*a, **kw)
        return res._replace(value=res.value * np.nan)

    monkeypatch.setattr(fit_module, "fit_chunked", nan_fit)
    rc = cli.main(["fit", str(data), "--out", str(tmp_path / "o")])
    assert rc == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non-finite" in err
    assert not (tmp_path / "o").exists()


# -- --out ---------------------------------------------------------------------------------------

def test_out_checked_before_any_work(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, **_data())
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    cases = [("afile", "exists and is not a folder"), ("afile/sub", "is not a folder"),
             ("dangling", "a dangling symbolic link")]
    for k, (out, message) in enumerate(cases):
        # with checkpoints too: refused before the first one, not at it
        extra = ["--checkpoint-every", "1", "--method", "alternating"] if k == 0 else []
        proc = _run("fit", str(data), "--out", str(tmp_path / out), *extra)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
    assert (tmp_path / "afile").read_text() == "keep me"
    if os.geteuid() != 0:  # root may write into a read-only folder
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(InputError, match="is not writable"):
            check_out_dir(ro / "sub")


def test_concurrent_runs_one_writes_the_other_is_refused(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, **_data())
    out = tmp_path / "o"
    with OutputLock(out):
        proc = _run("fit", str(data), "--out", str(out))
        assert proc.returncode == 2
        assert f"another matgrad run (pid {os.getpid()})" in proc.stderr
    procs = [subprocess.Popen(MATGRAD + ["fit", str(data), "--out", str(out), "--method",
                                         "alternating"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    assert sum("wrote" in so for so, _ in outs) == 1
    refused = next(se for p, (_, se) in zip(procs, outs) if p.returncode == 2)
    assert "another matgrad run" in refused or "exists; pass --force" in refused


# -- a result set is written as one ---------------------------------------------------------------

_KILLER = r"""
import os, signal, sys
from pathlib import Path
import matgrad_jax.io as io
step = int(sys.argv[2])
count = [0]
def hook(fn):
    def wrapped(*a, **k):
        if count[0] == step:
            os.kill(os.getpid(), signal.SIGKILL)
        count[0] += 1
        return fn(*a, **k)
    return wrapped
io._write_file = hook(io._write_file)
io._exchange = hook(io._exchange)
io.atomic_write_bytes = hook(io.atomic_write_bytes)
os.link = hook(os.link)
io.write_result_set(Path(sys.argv[1]), {"solution.npz": b"new-solution",
                    "history.json": b"new-history", "convergence.png": b"new-png"},
                    remove=("checkpoint.npz",))
print("completed")
"""


def _snapshot(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_result_set_is_old_or_new_never_a_mix_after_sigkill(tmp_path):
    old = {"solution.npz": b"old-solution", "history.json": b"old-history",
           "convergence.png": b"old-png"}
    new = {k: v.replace(b"old", b"new") for k, v in old.items()}
    for step in range(12):
        out = tmp_path / f"o{step}"
        out.mkdir()
        for k, v in {**old, "notes.txt": b"the user's", "checkpoint.npz": b"ck"}.items():
            (out / k).write_bytes(v)
        proc = subprocess.run([sys.executable, "-c", _KILLER, str(out), str(step)],
                              capture_output=True, text=True, timeout=120)
        snap = _snapshot(out)
        results = {k: snap.get(k) for k in old}
        assert results in (old, new), (step, snap)
        assert snap["notes.txt"] == b"the user's"  # nothing the user had is lost
        if results == old:
            assert proc.returncode == -signal.SIGKILL
            assert snap["checkpoint.npz"] == b"ck"
        else:
            assert "checkpoint.npz" not in snap
        with OutputLock(out):  # the next run clears what a killed one left beside the folder
            pass
        assert not list(tmp_path.glob(f".o{step}.matgrad-*"))
        if proc.returncode == 0:
            break
    assert proc.stdout.strip() == "completed"


def test_stray_temporaries_removed_and_umask_mode(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / ".solution.npz.x1y2").write_bytes(b"partial")
    with OutputLock(out):
        assert not (out / ".solution.npz.x1y2").exists()
    old = os.umask(0o027)
    try:
        write_result_set(out, {"history.json": b"{}"})
        from matgrad_jax.io import atomic_write_bytes

        atomic_write_bytes(out / "other.json", b"{}")
    finally:
        os.umask(old)
    assert (out / "history.json").stat().st_mode & 0o777 == 0o640
    assert (out / "other.json").stat().st_mode & 0o777 == 0o640


def test_cli_fit_writes_one_set_and_resume_still_works(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, **_data())
    out = tmp_path / "o"
    proc = _run("fit", str(data), "--out", str(out), "--method", "alternating",
                "--checkpoint-every", "3")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [".matgrad.lock", "convergence.png", "history.json", "solution.npz"]
    assert json.loads((out / "history.json").read_text())["converged"]
    assert not list(tmp_path.glob(".o.matgrad-*"))


# -- bounded reads -------------------------------------------------------------------------------

def test_unused_inflating_member_is_never_read(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, **_data(), junk=np.zeros(64 * 2**20, np.uint8))  # 64 MiB
    assert path.stat().st_size < 2 * 2**20
    got = load_arrays(path, channel.DATA_NAMES, max_bytes=2**20)
    assert set(got) == set(channel.DATA_NAMES)
    with pytest.raises(InputError, match=r"junk in d.npz takes 64.0 MiB once read, over the cap"
                                         r" of 1 MiB"):
        load_arrays(path, ["junk"], max_bytes=2**20)
    assert DEFAULT_MAX_ARRAY_BYTES >= 2**30


def test_cli_cap_option(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **_data(n=300))
    proc = _run("fit", str(path), "--out", str(tmp_path / "o"), "--max-array-mib", "0.01")
    assert proc.returncode == 2 and "--max-array-mib" in proc.stderr


def test_duplicate_member_names_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **_data())
    import io

    buf = io.BytesIO()
    np.save(buf, np.ones((7, 5)))
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("A.npy", buf.getvalue())
    with pytest.raises(InputError, match="two members named 'A.npy'"):
        load_arrays(path)


def test_fingerprint_streams_without_copies():
    import tracemalloc

    a = np.arange(6e6).reshape(2000, 3000)  # 48 MB
    expect = hashlib.sha256()
    for k, x in (("a", a), ("t", a.T)):
        x = np.ascontiguousarray(x)
        expect.update(f"{k}:{x.dtype.str}:{x.shape};".encode())
        expect.update(x.tobytes())
    tracemalloc.start()
    got = fingerprint({"a": a, "t": a.T})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == expect.hexdigest()
    assert peak < 8 * 2**20  # far below one copy of the array


# -- errors that name their cause ----------------------------------------------------------------

def test_names_absent_key_named(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **_data())
    proc = _run("fit", str(path), "--out", str(tmp_path / "o"), "--names", "W=Wrong")
    assert proc.returncode == 2
    assert "--names W=Wrong: DATA has no array named 'Wrong' (it holds: A, B, P, S, W, Z)" \
        in proc.stderr


def test_low_precision_data_are_widened_and_bad_dtypes_named():
    d = _data()
    half = {k: jnp.asarray(v, jnp.bfloat16) for k, v in d.items()}
    assert channel.Problem(*(half[k] for k in channel.DATA_NAMES)).dtype == jnp.float32
    f16 = {k: v.astype(np.float16) for k, v in d.items()}
    assert channel.Problem(*(f16[k] for k in channel.DATA_NAMES)).dtype == jnp.float32
    with pytest.raises(InputError, match="dtype: expected a real floating dtype "
                                         r"\(float32, float64\), got float16"):
        channel.Problem(*(d[k] for k in channel.DATA_NAMES), dtype=np.float16)
    stacked = {k: v[None] for k, v in d.items()}
    for bad in ("float16", "int32"):
        with pytest.raises(InputError, match=f"dtype: .*got {bad}"):
            solve_batch(stacked, dtype=bad)


@pytest.mark.parametrize("call, message", [
    (lambda s: solve_batch(s, ridge=np.ones(2)), "ridge: expected a scalar, got an array of "
                                                 "shape (2,)"),
    (lambda s: solve_batch(s, mesh="cpu"), "mesh: expected a jax.sharding.Mesh"),
    (lambda s: solve_batch(s, max_iter=3), "unexpected option(s) 'max_iter' (did you mean "
                                           "'max_iters'?)"),
    (lambda s: fit(channel.Problem(*(s[k][0] for k in channel.DATA_NAMES)), max_iter=3),
     "fit: unexpected option(s) 'max_iter' (did you mean 'max_iters'?)"),
])
def test_unclear_errors_now_name_their_cause(call, message):
    stacked = {k: v[None] for k, v in _data().items()}
    with pytest.raises(InputError) as info:
        call(stacked)
    assert message in str(info.value)
