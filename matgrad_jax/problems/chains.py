r"""Both seeds' derivations transcribed line by line, as published (mistakes included).

Every displayed equality of the answers becomes one :func:`~matgrad_jax.step`: a function of the
point and the tangent that states the differential the line writes (or the value, for lines
``φ = …``), its text in the seed's notation, and the file and line it comes from. The chains are
registered with :func:`~matgrad_jax.registry.register_chain`; ``matgrad_jax.chains()`` lists them
and ``chain.check()`` audits one (:func:`~matgrad_jax.check_derivation`).

Seed 1 (``000_59df1aa91f78fd77.txt``): the main chain ``channel/phi`` (line 10) up to the
Kronecker form, the gradients read off it; the SVD route ``channel/svd_route`` for
:math:`C:(I_2\otimes dR) = E:dR`; the SVD-free identity ``channel/kron_identity`` (line 17).
Seed 2 (``003_ab211ea8d8ce13a7.txt``, line 18): ``gram/frobenius`` and ``gram/spectral``.

Where a line's text needs a reading, the reading is the one the seeds' code already uses
(:mod:`~matgrad_jax.problems.channel`): ``V_k = Reshape(v_k, n, 2)`` is read as ``(m, 2)``
(``v_k`` has ``2m`` entries), and a line that states ``2φ dφ = …`` is checked as the dφ it
implies.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..audit.steps import from_gradient, step
from ..identities import J2
from . import channel, gram

CH = f"seeds/{channel.SEED_FILE}"
GR = f"seeds/{gram.SEED_FILE}"
I2 = np.eye(2)


def _fr(X, Y):
    """X:Y, the Frobenius product."""
    return jnp.sum(X * Y)


def _kron2(X, Y, dtype):
    return jnp.kron(I2.astype(dtype), X) + jnp.kron(J2.astype(dtype), Y)


def _svd_factors(C, n, m):
    """σ_k, u_k, v_k of C (``2n x 2m``) and U_k = Reshape(u_k, n, 2), V_k = Reshape(v_k, m, 2)
    (column-major: vec stacks columns)."""
    u, sigma, vt = jnp.linalg.svd(C, full_matrices=False)
    U = jax.vmap(lambda c: jnp.reshape(c, (n, 2), order="F"))(u.T)
    V = jax.vmap(lambda c: jnp.reshape(c, (m, 2), order="F"))(vt)
    return sigma, u.T, vt, U, V


def _E_F(C, n, m):
    sigma, _, _, U, V = _svd_factors(C, n, m)
    E = jnp.einsum("k,kna,kma->nm", sigma, U, V)
    F = jnp.einsum("k,kna,ab,kmb->nm", sigma, U, J2.astype(C.dtype), V)
    return E, F


# ---- seed 1, the main chain (line 10) -----------------------------------------------------------

def _mask(Z):
    return jnp.eye(Z.shape[0], dtype=Z.dtype)


def _channel_lines():
    src = f"{CH}:10"

    def mats(R, Q, A, B, Z, P, S, W):
        return channel.seed_matrices(R, Q, A, B, Z, P, S, W)

    def l_value(R, Q, A, B, Z, P, S, W):
        M, N, _, _ = mats(R, Q, A, B, Z, P, S, W)
        return _fr(M, M) + _fr(N, N)

    def l_dmdn(R, Q, A, B, Z, P, S, W, d):
        dR, dQ = d
        M, N, _, _ = mats(R, Q, A, B, Z, P, S, W)
        dM = _mask(Z) * (dR.T @ A + dQ.T @ B)
        dN = _kron2(dR, dQ, R.dtype) @ P @ S.T
        return {"2M:dM": 2 * _fr(M, dM), "2N:dN": 2 * _fr(N, dN)}

    def l_expanded(R, Q, A, B, Z, P, S, W, d):
        dR, dQ = d
        M, N, _, _ = mats(R, Q, A, B, Z, P, S, W)
        return {"2M:(I⊙(dRᵀA+dQᵀB))": 2 * _fr(M, _mask(Z) * (dR.T @ A + dQ.T @ B)),
                "2N:(I₂⊗dR+J₂⊗dQ)PSᵀ": 2 * _fr(N, _kron2(dR, dQ, R.dtype) @ P @ S.T)}

    def l_dc(R, Q, A, B, Z, P, S, W, d):
        dR, dQ = d
        _, _, D, C = mats(R, Q, A, B, Z, P, S, W)
        return {"2D:(AᵀdR+BᵀdQ)": 2 * _fr(D, A.T @ dR + B.T @ dQ),
                "2C:(I₂⊗dR+J₂⊗dQ)": 2 * _fr(C, _kron2(dR, dQ, R.dtype))}

    def l_kron(R, Q, A, B, Z, P, S, W, d):
        dR, dQ = d
        _, _, D, C = mats(R, Q, A, B, Z, P, S, W)
        n = R.shape[0]
        I2d = I2.astype(R.dtype)
        JI = jnp.kron(J2.astype(R.dtype), jnp.eye(n, dtype=R.dtype))
        return {"2AD:dR": 2 * _fr(A @ D, dR), "2C:(I₂⊗dR)": 2 * _fr(C, jnp.kron(I2d, dR)),
                "2BD:dQ": 2 * _fr(B @ D, dQ),
                "−2(J₂⊗I_Q)C:(I₂⊗dQ)": -2 * _fr(JI @ C, jnp.kron(I2d, dQ))}

    def l_dphi_r(R, Q, A, B, Z, P, S, W, d):
        dR, _ = d
        _, _, D, C = mats(R, Q, A, B, Z, P, S, W)
        E, _ = _E_F(C, *R.shape)
        return {"2AD:dR": 2 * _fr(A @ D, dR), "2E:dR": 2 * _fr(E, dR)}

    def g_r(R, Q, A, B, Z, P, S, W):
        _, _, D, C = mats(R, Q, A, B, Z, P, S, W)
        E, _ = _E_F(C, *R.shape)
        return {"2AD": 2 * A @ D, "2E": 2 * E}

    def g_q(R, Q, A, B, Z, P, S, W):
        _, _, D, C = mats(R, Q, A, B, Z, P, S, W)
        _, F = _E_F(C, *R.shape)
        return {"2BD": 2 * B @ D, "−2F": -2 * F}

    return [
        step("φ = M:M + N:N", l_value, states="value", source=src),
        step("dφ = 2M:dM + 2N:dN", l_dmdn, source=src),
        step("= 2M:(I⊙(dRᵀA+dQᵀB)) + 2N:(I₂⊗dR+J₂⊗dQ)PSᵀ", l_expanded, source=src),
        step("= 2D:(AᵀdR+BᵀdQ) + 2C:(I₂⊗dR+J₂⊗dQ)", l_dc, source=src),
        step("= 2AD:dR + 2C:(I₂⊗dR) + 2BD:dQ − 2(J₂⊗I_Q)C:(I₂⊗dQ)", l_kron, source=src),
        step("dφ = 2(AD+E):dR  (the SVD result substituted, dQ = 0)", l_dphi_r,
             assumes="dQ = 0", source=src),
        step("∂φ/∂R = 2(AD+E)", from_gradient(g_r, wrt="R"), source=src),
        step("∂φ/∂Q = 2(BD−F),  F = Σₖσₖ UₖJ₂Vₖᵀ", from_gradient(g_q, wrt="Q"), source=src),
    ]


# ---- seed 1, the SVD route (line 10) ------------------------------------------------------------

def svd_route_term(R, C):
    """ψ(R) = C:(I₂⊗R) with C held fixed (the term the SVD route rewrites)."""
    return _fr(C, jnp.kron(I2.astype(R.dtype), R))


def svd_route_args(seed=0, dtype=jnp.float64):
    args = channel.example_args(seed, dtype=dtype)
    return args[0], channel.seed_matrices(*args)[3]


def _svd_lines():
    src = f"{CH}:10"

    def fac(R, C):
        return _svd_factors(C, *R.shape)

    def l1(R, C, dR):
        s, u, v, _, _ = fac(R, C)
        K = jnp.kron(I2.astype(R.dtype), dR)
        return jnp.sum(s * jnp.einsum("ka,kb,ab->k", u, v, K))

    def l2(R, C, dR):
        s, u, v, _, _ = fac(R, C)
        K = jnp.kron(I2.astype(R.dtype), dR)
        return jnp.sum(s * jnp.einsum("ka,ka->k", u, v @ K.T))

    def l3(R, C, dR):
        s, u, _, _, V = fac(R, C)
        vec = jax.vmap(lambda Vk: jnp.reshape(dR @ Vk @ I2.astype(R.dtype), (-1,), order="F"))(V)
        return jnp.sum(s * jnp.einsum("ka,ka->k", u, vec))

    def l4(R, C, dR):
        s, _, _, U, V = fac(R, C)
        return jnp.sum(s * jnp.einsum("kna,kna->k", U, jnp.einsum("nm,kma->kna", dR, V)))

    def l5(R, C, dR):
        s, _, _, U, V = fac(R, C)
        return _fr(jnp.einsum("k,kna,kma->nm", s, U, V), dR)

    return [
        step("C:(I₂⊗dR) = Σₖσₖuₖvₖᵀ:(I₂⊗dR)", l1, source=src),
        step("= Σₖσₖuₖ:(I₂⊗dR)vₖ", l2, source=src),
        step("= Σₖσₖuₖ:vec(dR VₖI₂)", l3, source=src),
        step("= Σₖσₖ Uₖ:dR Vₖ", l4, source=src),
        step("= (Σₖσₖ UₖVₖᵀ):dR", l5, source=src),
        step("= E:dR", from_gradient(lambda R, C: _E_F(C, *R.shape)[0]), source=src),
    ]


# ---- seed 1, the SVD-free identity (line 17) ----------------------------------------------------

P_KRON = 3


def kron_term(X, Y):
    """ψ = Y:(I_p⊗X), p = 3 (the seed's general p)."""
    return _fr(Y, jnp.kron(jnp.eye(P_KRON, dtype=X.dtype), X))


def kron_args(seed=0, *, m=4, n=3, dtype=jnp.float64):
    """X ``(m, n)`` and Y ``(pm, pn)`` at rectangular shapes."""
    rng = np.random.default_rng(seed + 17)
    dtype = jax.dtypes.canonicalize_dtype(dtype)  # float32 where x64 is off
    X = jnp.asarray(rng.standard_normal((m, n)).astype(dtype))
    Y = jnp.asarray(rng.standard_normal((P_KRON * m, P_KRON * n)).astype(dtype))
    return X, Y


def _kron_lines():
    src = f"{CH}:17"
    p = P_KRON

    def blocks(X, Y):
        m, n = X.shape
        e = jnp.eye(p, dtype=X.dtype)
        E = jnp.stack([jnp.kron(e[:, k:k + 1], jnp.eye(m, dtype=X.dtype)) for k in range(p)])
        F = jnp.stack([jnp.kron(e[:, k:k + 1], jnp.eye(n, dtype=X.dtype)) for k in range(p)])
        return E, F

    def v1(X, Y):
        E, F = blocks(X, Y)
        K = jnp.kron(jnp.eye(p, dtype=X.dtype), X)
        return jnp.einsum("jam,ab,kbn,jcm,cd,kdn->", E, Y, F, E, K, F)

    def v2(X, Y):
        E, F = blocks(X, Y)
        delta = jnp.eye(p, dtype=X.dtype)
        return jnp.einsum("jam,ab,kbn,jk,mn->", E, Y, F, delta, X)

    def v3(X, Y):
        E, F = blocks(X, Y)
        return _fr(jnp.einsum("kam,ab,kbn->mn", E, Y, F), X)

    def d4(X, Y, dX):
        E, F = blocks(X, Y)
        return _fr(jnp.einsum("kam,ab,kbn->mn", E, Y, F), dX)

    def g5(X, Y):
        E, F = blocks(X, Y)
        return jnp.einsum("kam,ab,kbn->mn", E, Y, F)

    def g6(X, Y):
        m, n = X.shape
        e = jnp.eye(p, dtype=X.dtype)
        return sum(jnp.kron(e[k:k + 1, :], jnp.eye(m, dtype=X.dtype)) @ Y
                   @ jnp.kron(e[:, k:k + 1], jnp.eye(n, dtype=X.dtype)) for k in range(p))

    return [
        step("ψ = Σⱼ Σₖ EⱼᵀYFₖ : Eⱼᵀ(I_p⊗X)Fₖ", v1, states="value", source=src),
        step("= Σⱼ Σₖ EⱼᵀYFₖ : δⱼₖX", v2, states="value", source=src),
        step("= Σₖ EₖᵀYFₖ : X", v3, states="value", source=src),
        step("dψ = Σₖ EₖᵀYFₖ : dX", d4, source=src),
        step("∂ψ/∂X = Σₖ EₖᵀYFₖ", from_gradient(g5), source=src),
        step("= Σₖ (eₖᵀ⊗I_m) Y (eₖ⊗I_n)", from_gradient(g6), source=src),
    ]


# ---- seed 2 (line 18) ---------------------------------------------------------------------------

def _gram_frobenius_lines():
    src = f"{GR}:18"
    X = gram.residual
    phi = gram.frobenius

    return [
        step("φ = ‖BBᵀ−Q‖_F", lambda B, Q: phi(B, Q), states="value", source=src),
        step("φ² = ‖BBᵀ−Q‖²_F  (as φ)", lambda B, Q: jnp.sqrt(jnp.sum(X(B, Q) ** 2)),
             states="value", source=src),
        step("= (BBᵀ−Q):(BBᵀ−Q)  (as φ)", lambda B, Q: jnp.sqrt(_fr(X(B, Q), X(B, Q))),
             states="value", source=src),
        step("2φ dφ = 2(BBᵀ−Q):(dB Bᵀ + B dBᵀ)",
             lambda B, Q, dB: 2 * _fr(X(B, Q), dB @ B.T + B @ dB.T) / (2 * phi(B, Q)),
             source=src),
        step("= 4(BBᵀ−Q)B:dB", lambda B, Q, dB: 4 * _fr(X(B, Q) @ B, dB) / (2 * phi(B, Q)),
             source=src),
        step("dφ = 2φ⁻¹(BBᵀ−Q)B:dB", lambda B, Q, dB: 2 * _fr(X(B, Q) @ B, dB) / phi(B, Q),
             source=src),
        step("∂φ/∂B = 2φ⁻¹(BBᵀ−Q)B", from_gradient(gram.frobenius_grad_published), source=src),
    ]


def _top_pair(B, Q):
    u, s, vt = jnp.linalg.svd(gram.residual(B, Q))
    return s[0], u[:, 0], vt[0]


def _gram_spectral_lines():
    src = f"{GR}:18"

    def dX(B, dB):
        return dB @ B.T + B @ dB.T

    def l2(B, Q, dB):
        _, u, v = _top_pair(B, Q)
        return _fr(jnp.outer(u, v), dX(B, dB))

    def l4(B, Q, dB):
        _, u, v = _top_pair(B, Q)
        return _fr((jnp.outer(u, v) + jnp.outer(v, u)) @ B, dB)

    return [
        step("φ = ‖X‖_S = σ₁", lambda B, Q: _top_pair(B, Q)[0], states="value", source=src),
        step("dφ = u₁v₁ᵀ:dX", l2, source=src),
        step("X = BBᵀ−Q:  dφ = (u₁v₁ᵀ):(dB Bᵀ + B dBᵀ)", l2, source=src),
        step("= (u₁v₁ᵀ + v₁u₁ᵀ)B:dB", l4, source=src),
        step("∂φ/∂B = (u₁v₁ᵀ + v₁u₁ᵀ)B", from_gradient(gram.spectral_grad_published),
             source=src),
    ]


def register_chains(register_chain: Callable) -> None:
    """Register the seeds' chains with ``register_chain``
    (:func:`matgrad_jax.registry.register_chain`)."""
    data = dict.fromkeys(channel.DATA_NAMES, "general")
    register_chain("channel/phi", channel.objective, _channel_lines(), argnums=(0, 1),
                   arg_names=channel.ARG_NAMES, example_args=channel.example_args,
                   domains=data, source=f"{CH}:10", builtin=True,
                   notes="the answer's differential of φ up to the Kronecker form, then the "
                         "gradients read off it")
    register_chain("channel/svd_route", svd_route_term, _svd_lines(), argnums=0,
                   arg_names=("R", "C"), example_args=svd_route_args,
                   domains={"C": "general"}, source=f"{CH}:10", builtin=True,
                   notes="C:(I₂⊗dR) = E:dR by the SVD of C (C held fixed); Reshape(v_k, n, 2) "
                         "read as (m, 2)")
    register_chain("channel/kron_identity", kron_term, _kron_lines(), argnums=0,
                   arg_names=("X", "Y"), example_args=kron_args, domains={"Y": "general"},
                   source=f"{CH}:17", builtin=True,
                   notes="the SVD-free identity ∂/∂X [Y:(I_p⊗X)] = Σₖ EₖᵀYFₖ, at p = 3")
    register_chain("gram/frobenius", gram.frobenius, _gram_frobenius_lines(), argnums=0,
                   arg_names=("B", "Q"), example_args=gram.example_args,
                   domains={"Q": "general"}, source=f"{GR}:18", builtin=True,
                   notes="lines stating φ² or 2φ dφ are checked as the φ or dφ they imply")
    register_chain("gram/spectral", gram.spectral, _gram_spectral_lines(), argnums=0,
                   arg_names=("B", "Q"), example_args=gram.example_args,
                   domains={"Q": "general"}, source=f"{GR}:18", builtin=True,
                   notes="valid where the top singular value of BBᵀ − Q is simple")


# the seeds' own LaTeX, read by check_derivation_latex: problems/seed_latex.py
from .seed_latex import SEED_TEXTS, check_seed_latex, seed_text  # noqa: E402,F401
