"""Sharded batches and row-sharded problems on 4 forced host devices, and a two-process
``jax.distributed`` run on loopback. Each runs in a fresh subprocess: the device count and the
distributed runtime are fixed when a process first touches JAX."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matgrad_jax import InputError, solve_batch, solve_rows
from matgrad_jax.problems import channel

HERE = Path(__file__).parent


def _env(devices):
    # the suite's flags less its choice of fusion emitters: "sharded == the same batch on one
    # device" to the last bit holds for XLA:CPU's default (MLIR) fusion emitters, whose code
    # for a batch of 2 per device and of 8 on one rounds alike; the classic emitters vectorise
    # the two batch sizes differently (an L-BFGS run then ends 1e-6 apart, within tolerance)
    flags = [f for f in os.environ.get("MATGRAD_SUITE_XLA_FLAGS", "").split()
             if not f.startswith("--xla_cpu_use_fusion_emitters")]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = " ".join([f"--xla_force_host_platform_device_count={devices}", *flags])
    return env


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale") / "checks.json"
    proc = subprocess.run([sys.executable, str(HERE / "scripts" / "scale_checks.py"), str(out)],
                          env=_env(4), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())  # a file of its own, not stdout


@pytest.mark.parametrize("method", ["exact", "cg", "alternating", "lbfgs"])
def test_batch_sharded_equals_single_device(four_devices, method):
    full = four_devices[f"batch/{method}/8"]
    assert full["shape"] == [8, 9, 5] and full["spec"] == ["batch"]
    assert full["devices"] == [0, 1, 2, 3] and full["shard_rows"] == [2, 2, 2, 2]
    assert full["err"] <= 1e-12  # sharded == the same batch on one device
    # == each problem's fit, to within the solver tolerance (its statistics' products are
    # GEMMs, not written out: the rounding differs, and an iterative solver may stop an
    # iteration earlier or later)
    tol = 1e-12 if method == "exact" else 1e-5
    assert full["err_fit"] <= tol
    if method in ("exact", "lbfgs"):  # 6 problems on 4 devices: padded to 8, cut back, right
        odd = four_devices[f"batch/{method}/6"]
        assert odd["shape"] == [6, 9, 5] and odd["err"] <= 1e-12


def test_a_users_model_sharded_equals_single_solves(four_devices):
    for b in (8, 6):  # 6: padded to 8 for the 4 devices, cut back
        r = four_devices[f"model/mf/{b}"]
        assert r["shape"] == [[b, 8, 2], [b, 6, 2]]
        assert r["err"] <= 1e-12  # sharded == the same batch on one device
        assert r["err_single"] <= 1e-6  # == minimize of each problem, to the solver tolerance
    full = four_devices["model/mf/8"]
    assert full["spec"] == ["batch"] and full["devices"] == [0, 1, 2, 3]
    assert full["shard_rows"] == [2, 2, 2, 2]


def test_batch_on_a_sub_mesh(four_devices):
    assert four_devices["batch/mesh2"] == {"devices": [0, 1], "converged": True}


@pytest.mark.parametrize("method, tol", [("exact", 1e-12), ("cg", 1e-12),
                                         ("alternating", 1e-5)])
def test_rows_sharded_equals_exact(four_devices, method, tol):
    even = four_devices[f"rows/{method}/40"]
    assert even["spec"] == ["rows", None] and even["shard_rows"] == [10, 10, 10, 10]
    assert even["err"] <= tol
    if method != "cg":  # zero-padded rows are inert (padding shared by every method)
        assert four_devices[f"rows/{method}/37"]["err"] <= tol


@pytest.mark.parametrize("method", ["auto", "alternating"])
def test_a_users_model_with_its_rows_sharded(four_devices, method):
    even = four_devices[f"model-rows/{method}/40"]
    assert even["spec"] == ["rows", None] and even["devices"] == [0, 1, 2, 3]
    assert even["shard_rows"] == [10, 10, 10, 10]
    assert len(even["v_devices"]) == 4  # V (no rows declared) replicated on every device
    checked = [even]
    if method == "auto":
        odd = four_devices["model-rows/auto/38"]  # 38 rows: the 2 devices that divide them
        assert odd["devices"] == [0, 1] and odd["shard_rows"] == [19, 19]
        checked.append(odd)
    for r in checked:
        assert r["converged"] and r["err"] <= 1e-6 and r["value_gap"] <= 1e-10


def test_two_processes_with_jax_distributed(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "summary.json"
    env = {**os.environ, "XLA_FLAGS": os.environ.get("MATGRAD_SUITE_XLA_FLAGS", "")}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "matgrad_jax.multihost", "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i), "--local-devices", "2",
         "--out", str(out), "--report-dir", str(tmp_path)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    for p, se in zip(procs, errs):
        assert p.returncode == 0, se[-3000:]
    # each process's own report file: never parsed out of stdout, which the distributed
    # runtime's threads (gloo) share and write to mid-line
    lines = [json.loads((tmp_path / f"process-{i}.json").read_text()) for i in range(2)]
    assert [ln["process"] for ln in lines] == [0, 1]
    for ln in lines:
        assert ln["process_count"] == 2 and ln["global_devices"] == 4
        assert ln["local_devices"] == 2 and not ln["fully_addressable"]
        assert ln["gathered_shape"] == [12, 9, 5] and ln["max_error_vs_single"] <= 1e-12
    # each process solved its own half of the batch
    assert lines[0]["local_problems"] == list(range(6))
    assert lines[1]["local_problems"] == list(range(6, 12))
    # ... and of a user's model (the factorisation, X as data)
    for i, ln in enumerate(lines):
        model = ln["model"]
        assert model["gathered_shape"] == [12, 8, 2] and not model["fully_addressable"]
        assert model["max_error_vs_single"] <= 1e-6
        assert model["local_problems"] == list(range(6 * i, 6 * i + 6))
    assert json.loads(out.read_text())["process_count"] == 2


# Input checks run in this process (one device).


def _batch(b=3):
    ds = [channel.make_data(7, 4, 5, 6, noise=0.01, seed=s) for s in range(b)]
    return {k: np.stack([np.asarray(d[k]) for d in ds]) for k in channel.DATA_NAMES}


def test_solve_batch_single_device_and_init():
    data = _batch()
    R, Q = solve_batch(data)
    ref = channel.solve_exact(*(data[k][1] for k in channel.DATA_NAMES))
    np.testing.assert_allclose(R[1], ref[0], atol=1e-10)
    res = solve_batch(data, method="cg", init=(R, Q), full_result=True)
    assert np.all(res.converged)
    np.testing.assert_allclose(res.params[0], R, atol=1e-10)  # started at the answer, stays


@pytest.mark.parametrize("method", ["exact", "cg"])
def test_solve_batch_in_chunks(method):
    # 8 problems in chunks of 3 (3 + 3 + a remainder of 2), with a start: the same as at once
    data = _batch(8)
    z = np.zeros(data["A"].shape)
    whole = solve_batch(data, method=method, init=(z, z), chunk_size=0, full_result=True)
    for chunk in (3, 8, None):
        part = solve_batch(data, method=method, init=(z, z), chunk_size=chunk, full_result=True)
        np.testing.assert_allclose(part.params[0], whole.params[0], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(part.params[1], whole.params[1], rtol=1e-12, atol=1e-13)
        np.testing.assert_array_equal(part.iterations, whole.iterations)


def test_chunk_size_default_and_errors():
    from matgrad_jax.scale import CHUNK_BYTES, _chunk_size, device_mesh
    data = _batch(2)
    per_problem = sum(a.nbytes for a in data.values()) // 2
    fit = CHUNK_BYTES // per_problem
    want = 1 << (fit.bit_length() - 1)  # the largest power of two within CHUNK_BYTES
    assert want <= fit < 2 * want
    mesh = device_mesh()
    assert _chunk_size(None, data, 10 * want, mesh) == want
    assert _chunk_size(None, data, want, mesh) == 0  # the whole slice fits: at once
    assert _chunk_size(5, data, 100, mesh) == 5 and _chunk_size(0, data, 100, mesh) == 0
    for bad in (-1, 2.5, True, "4"):
        with pytest.raises(InputError, match="chunk_size: expected None or an integer >= 0"):
            solve_batch(data, chunk_size=bad)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("S"), "data: missing array(s) S"),
    (lambda d: d.__setitem__("W", d["W"][:2]), "W: expected a leading batch axis of 3"),
    (lambda d: d.__setitem__("A", d["A"][0]), "A: expected a 3-d array"),
    (lambda d: d.__setitem__("P", d["P"][:, :-1]), "P: expected shape (2m, k)"),
    (lambda d: d["Z"].__setitem__((2, 0, 0), np.inf),
     "Z: holds 1 NaN/Inf value(s) in problem(s) 2"),
    (lambda d: d.__setitem__("B", d["B"] * 1j), "B: expected real data"),
])
def test_solve_batch_bad_input(mutate, message):
    data = _batch()
    mutate(data)
    with pytest.raises(InputError) as exc:
        solve_batch(data)
    assert message in str(exc.value)


def test_bad_options_and_start():
    data = _batch()
    with pytest.raises(InputError, match="method: expected one of"):
        solve_batch(data, method="newton")
    with pytest.raises(InputError, match="unexpected option"):
        solve_batch(data, max_iter=3)
    with pytest.raises(InputError, match="tol: expected a finite real number >= 0, got -1.0"):
        solve_batch(data, method="alternating", tol=-1.0)
    with pytest.raises(InputError, match="max_iters: expected an integer >= 0, got -2"):
        solve_rows({k: v[0] for k, v in data.items()}, method="cg", max_iters=-2)
    with pytest.raises(InputError, match=r"R0: expected shape \(3, 7, 4\)"):
        solve_batch(data, init=(np.zeros((3, 4, 7)), np.zeros((3, 7, 4))))
    with pytest.raises(InputError, match="expected a dict"):
        solve_rows([1, 2])


def test_model_rows_on_one_device_and_its_errors():
    from matgrad_jax import Model, examples, register, unregister

    rng = np.random.default_rng(1)
    X, U0, V0 = (rng.standard_normal(s) for s in ((9, 7), (9, 2), (7, 2)))
    U, V = solve_rows({"X": X}, model="examples/mf/right", init={"U": U0, "V": V0})
    alone = Model.from_derivation("examples/mf/right").fit({"X": X}, (U0, V0))
    np.testing.assert_allclose(np.asarray(U @ V.T), np.asarray(alone.params[0] @ alone.params[1].T),
                               atol=1e-6)
    with pytest.raises(InputError, match=r"U: expected 9 rows along axis 0 \(as X\), got 8"):
        solve_rows({"X": X}, model="examples/mf/right", init={"U": U0[:8], "V": V0})
    register("test/mf/no-rows", examples.mf_objective, examples.mf_gradient, argnums=(0, 1),
             example_args=examples.mf_example, replace=True)
    try:
        with pytest.raises(InputError, match="declares no independent rows"):
            solve_rows({"X": X}, model="test/mf/no-rows", init={"U": U0, "V": V0})
    finally:
        unregister("test/mf/no-rows")
    with pytest.raises(InputError, match="rows of 'bad': 'Y' names no argument"):
        Model("bad", examples.mf_objective, None, (0, 1), ("U", "V", "X"), rows={"Y": 0})
    with pytest.raises(InputError, match="ridge: a seed-1 option"):
        solve_rows({"X": X}, model="examples/mf/right", init={"U": U0, "V": V0}, ridge=1.0)
    with pytest.raises(InputError, match="verify: for a model"):
        solve_rows({k: v[0] for k, v in _batch().items()}, verify="off")
    # a hand gradient that fails its audit is not fitted
    from matgrad_jax import GradientMismatch

    with pytest.raises(GradientMismatch):
        solve_rows({"X": X}, model=Model("mf/wrong", examples.mf_objective,
                                         examples.mf_gradient_missing_two, (0, 1),
                                         ("U", "V", "X"), rows={"X": 0, "U": 0}),
                   init={"U": U0, "V": V0})


def test_batch_compile_options(monkeypatch):
    import jax

    from matgrad_jax import xla_cpu as compile_options
    from matgrad_jax.bench.batch import _solver

    # jaxlib 0.6.1 to 0.10.2 know the option (a later one may not: then {}, as checked below,
    # not a failed upgrade); each call gives a dict of its own; only exact and CG take it
    known = compile_options._known(tuple(compile_options.BATCH_OPTIONS.items()))
    expected = {"xla_cpu_use_fusion_emitters": False} if known else {}
    options = compile_options.batch_compiler_options("cg")
    assert options == expected
    options["xla_cpu_use_fusion_emitters"] = True
    assert compile_options.batch_compiler_options() == expected
    assert compile_options.batch_compiler_options("adam") == {}
    # the vmapped solve compiled with them gives what the default compilation gives
    data = _batch(4)
    args = [data[k] for k in channel.DATA_NAMES]
    solve = jax.vmap(_solver("exact", 50))
    R, Q = jax.jit(solve, compiler_options=compile_options.batch_compiler_options())(*args)
    R0, Q0 = jax.jit(solve)(*args)
    np.testing.assert_allclose(R, R0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(Q, Q0, rtol=1e-12, atol=1e-13)
    # an option a future XLA no longer knows is left out, not an error in every compilation
    monkeypatch.setattr(compile_options, "BATCH_OPTIONS", {"xla_cpu_no_such_option": True})
    assert compile_options.batch_compiler_options() == {}
    R1, _ = jax.jit(solve, compiler_options=compile_options.batch_compiler_options())(*args)
    np.testing.assert_allclose(R1, R0, rtol=1e-12, atol=1e-13)
