"""Run by tests/test_scale.py in a subprocess with 4 forced host devices."""

import json
import sys

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from matgrad_jax import solve_batch  # noqa: E402
from matgrad_jax.fit import fit  # noqa: E402
from matgrad_jax.problems import channel  # noqa: E402
from matgrad_jax.scale import device_mesh, solve_rows  # noqa: E402

assert jax.device_count() == 4, jax.devices()
out = {}


def spread(x):
    return sorted({s.device.id for s in x.addressable_shards}), [s.data.shape for s in
                                                                 x.addressable_shards]


ds = [channel.make_data(9, 5, 6, 8, noise=0.01, seed=s) for s in range(8)]
data = {k: np.stack([np.asarray(d[k]) for d in ds]) for k in channel.DATA_NAMES}
problems = [channel.Problem(*(d[k] for k in channel.DATA_NAMES)) for d in ds]
one_device = device_mesh(devices=jax.devices()[:1])
for method in ("exact", "cg", "alternating", "lbfgs"):
    # The references: the same batch on one device (under vmap the statistics' small products
    # are written out and the preconditioners' inverses come from the LAPACK-free sweep, so it
    # is the batch, not `fit` of each problem, that sharding must reproduce), and single `fit`s
    # of Problems built one at a time, equal to within the solver tolerance.
    singles = [fit(p, method=method, max_iters=3000).params for p in problems]
    R, Q = solve_batch(data, method=method, max_iters=3000)
    on_one = solve_batch(data, method=method, max_iters=3000, mesh=one_device)
    # divisible, and not divisible by the 4 devices (the padding is the same for every method:
    # checked for a direct and an iterative one); the lanes of a batch are independent, so the
    # first 6 of the batch of 8 on one device are the reference of the 6
    for b in (8, 6) if method in ("exact", "lbfgs") else (8,):
        if b != 8:
            R, Q = solve_batch({k: v[:b] for k, v in data.items()}, method=method,
                               max_iters=3000)
        err = max(float(np.max(np.abs(np.asarray(X) - np.asarray(ref)[:b])))
                  for X, ref in zip((R, Q), on_one))
        err_fit = max(float(np.max(np.abs(np.asarray(X[i]) - np.asarray(ref[j]))))
                      for i, ref in enumerate(singles[:b]) for j, X in enumerate((R, Q)))
        devices, shapes = spread(R)
        out[f"batch/{method}/{b}"] = dict(shape=list(R.shape), spec=list(R.sharding.spec),
                                          devices=devices, shard_rows=[s[0] for s in shapes],
                                          err=err, err_fit=err_fit)

# A mesh over two of the four devices, and a full result.
res = solve_batch(data, method="exact", mesh=device_mesh(devices=jax.devices()[:2]),
                  full_result=True)
out["batch/mesh2"] = dict(devices=spread(res.params[0])[0], converged=bool(np.all(res.converged)))

for n in (40, 37):
    d = channel.make_data(n, 6, 9, 14, noise=0.01, seed=3)
    arrays = {k: np.asarray(d[k]) for k in channel.DATA_NAMES}
    ref = fit(channel.Problem(*arrays.values()), method="exact").params
    for method in ("exact", "cg", "alternating") if n == 40 else ("exact", "alternating"):
        R, Q = solve_rows(arrays, method=method, max_iters=5000)
        err = max(float(np.max(np.abs(np.asarray(X) - np.asarray(Y)))) for X, Y in
                  zip((R, Q), ref))
        devices, shapes = spread(R)
        out[f"rows/{method}/{n}"] = dict(spec=list(R.sharding.spec), devices=devices,
                                         shard_rows=[s[0] for s in shapes], err=err)
# A user's model (the factorisation of matgrad_jax.examples, X as data) over the 4 devices.
from matgrad_jax import examples, minimize  # noqa: E402

rng = np.random.default_rng(0)
X, U0, V0 = (rng.standard_normal(s) for s in ((8, 8, 6), (8, 8, 2), (8, 6, 2)))
one_solve = jax.jit(lambda x, u, v: minimize(lambda U, V: examples.mf_objective(U, V, x), (u, v),
                                              grad=lambda U, V: examples.mf_gradient(U, V, x),
                                              verify="off").params)  # one program for all
singles = [one_solve(X[i], U0[i], V0[i]) for i in range(8)]
on_one = solve_batch({"X": X}, model="examples/mf/right", init={"U": U0, "V": V0},
                     mesh=one_device)  # the reference of both (independent lanes)
for b in (8, 6):
    U, V = solve_batch({"X": X[:b]}, model="examples/mf/right", init={"U": U0[:b], "V": V0[:b]})
    devices, shapes = spread(U)
    out[f"model/mf/{b}"] = dict(
        shape=[list(U.shape), list(V.shape)], spec=list(U.sharding.spec), devices=devices,
        shard_rows=[s[0] for s in shapes],
        err=max(float(np.max(np.abs(np.asarray(A) - np.asarray(B)[:b])))
                for A, B in zip((U, V), on_one)),
        err_single=max(float(np.max(np.abs(np.asarray(A)[i] - np.asarray(singles[i][j]))))
                       for i in range(b) for j, A in enumerate((U, V))))

# One factorisation with its rows (of X and U) over the devices: 40 rows on all 4, 38 rows on the
# 2 that divide them; U Vᵀ and the value equal one device's solve (U, V themselves are unique
# only up to a rotation, which rounding may pick differently).
from matgrad_jax import Model, solve_rows  # noqa: E402,F811

model = Model.from_derivation("examples/mf/right")
for n in (40, 38):
    X, U0, V0 = (rng.standard_normal(s) for s in ((n, 12), (n, 3), (12, 3)))
    alone = model.fit({"X": X}, {"U": U0, "V": V0}, max_iters=3000, tol=0.0, gtol=1e-10)
    for method in ("auto", "alternating") if n == 40 else ("auto",):
        res = solve_rows({"X": X}, model="examples/mf/right", init={"U": U0, "V": V0},
                         method=method, max_iters=3000, tol=0.0, gtol=1e-10, full_result=True)
        U, V = res.params
        devices, shapes = spread(U)
        out[f"model-rows/{method}/{n}"] = dict(
            spec=list(U.sharding.spec), devices=devices, shard_rows=[s[0] for s in shapes],
            v_devices=spread(V)[0], converged=bool(res.converged),
            err=float(np.max(np.abs(np.asarray(U) @ np.asarray(V).T
                                    - np.asarray(alone.params[0] @ alone.params[1].T)))),
            value_gap=abs(float(res.value) - float(alone.value)) / float(alone.value))

with open(sys.argv[1], "w") as fh:  # results through a file: stdout is shared with the runtime
    json.dump(out, fh)
