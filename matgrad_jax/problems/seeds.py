"""The seeds' derivations, registered through :func:`matgrad_jax.register` like any user's."""

from __future__ import annotations

from . import channel, gram

_CH = f"seeds/{channel.SEED_FILE}"
_GR = f"seeds/{gram.SEED_FILE}"

_CHANNEL = [
    ("published", channel.grad_published, True,
     f"{_CH}: answer 1, E, F from the SVD of C; dphi/dH_R = 2(AD+E), dphi/dH_I = 2(BD-F)",
     r"\partial_R = 2(AD+E),\ \partial_Q = 2(BD-F)",
     "Reshape(v_k, n, 2) read as (m, 2) (v_k has 2m entries); the sign of F is kept as published"),
    ("corrected", channel.grad_corrected, False,
     f"{_CH}: answer 1 with the sign of F fixed", r"\partial_R = 2(AD+E),\ \partial_Q = 2(BD+F)",
     "the corrected form of 'published'"),
    ("blocks", channel.grad_blocks, False,
     f"{_CH}: line 'dphi = 2D:(...) + 2C:(...)' read off block by block",
     r"\partial_R = 2(AD+C_{11}+C_{22}),\ \partial_Q = 2(BD+C_{21}-C_{12})", ""),
    ("kron_identity", channel.grad_kron_identity, True,
     f"{_CH}: answer 2, d/dX[Y:(I_p (x) X)] = sum_k E_k^T Y F_k, with its J_2 (x) X companion",
     r"\partial_R = 2(AD+\sum_kE_k^TCF_k),\ \partial_Q = 2(BD+\sum_{jk}(J_2)_{jk}E_j^TCF_k)",
     "the J_2 companion is ours (the seed gives only I_p)"),
    ("structured", channel.grad_structured, False,
     f"{_CH}: fast form with H = R + iQ, G = K_c K_c^H, Y = W_c K_c^H",
     r"\partial_R + i\,\partial_Q = 2(C\,\mathrm{Diag}(r) + HG - Y)", ""),
]

_GRAM = [
    ("frobenius", gram.frobenius, gram.FROBENIUS_GRADIENTS, {
        "published": (True, f"{_GR}: Frobenius block, dphi/dB = 2 phi^-1 (BB^T-Q)B",
                      r"2\phi^{-1}(BB^T-Q)B", "assumes BB^T - Q symmetric"),
        "general": (False, f"{_GR}: corrected for any Q", r"\phi^{-1}(X+X^T)B", ""),
    }),
    ("frobenius_squared", gram.frobenius_squared, gram.FROBENIUS_SQUARED_GRADIENTS, {
        "published": (True, f"{_GR}: Frobenius block, 2 phi dphi = 4(BB^T-Q)B:dB",
                      r"4(BB^T-Q)B", "assumes BB^T - Q symmetric"),
        "general": (False, f"{_GR}: corrected for any Q", r"2(X+X^T)B", ""),
    }),
    ("spectral", gram.spectral, gram.SPECTRAL_GRADIENTS, {
        "published": (True, f"{_GR}: spectral block, dphi/dB = (u1 v1^T + v1 u1^T)B (full SVD)",
                      r"(u_1v_1^T+v_1u_1^T)B", "no gradient where sigma_1 is repeated"),
        "lanczos": (False, f"{_GR}: spectral block with the top pair by Lanczos",
                    r"(u_1v_1^T+v_1u_1^T)B", "32 Lanczos steps"),
    }),
]


# the chains (problems/chains.py) that derive the published formulas line by line
_CHANNEL_CHAINS = {"published": "channel/phi", "kron_identity": "channel/kron_identity"}
_GRAM_CHAINS = {("frobenius", "published"): "gram/frobenius",
                ("frobenius_squared", "published"): "gram/frobenius",
                ("spectral", "published"): "gram/spectral"}


def channel_hvp(R, Q, A, B, Z, P, S, W, v):
    """``Problem.hvp``, the closed-form Hessian product of seed 1 (a quadratic in (R, Q))."""
    return channel.Problem.from_stats(channel.channel_statistics(A, B, Z, P, S, W)).hvp(*v)


def register_builtins(register) -> None:
    """Register both seeds' derivations with ``register`` (:func:`matgrad_jax.register`)."""
    for variant, fn, published, source, formula, notes in _CHANNEL:
        register(f"channel/phi/{variant}", channel.objective, fn, argnums=(0, 1),
                 arg_names=channel.ARG_NAMES, source=source, published=published,
                 example_args=channel.example_args, notes=notes, formula=formula,
                 domains=dict.fromkeys(channel.DATA_NAMES, "general"),
                 hvp=channel_hvp if variant == "structured" else None, builtin=True,
                 chain=_CHANNEL_CHAINS.get(variant))
    for obj_name, obj, grads, meta in _GRAM:
        for variant, (published, source, formula, notes) in meta.items():
            register(f"gram/{obj_name}/{variant}", obj, grads[variant], argnums=0,
                     arg_names=("B", "Q"), source=source, published=published,
                     example_args=gram.example_args, notes=notes, formula=formula,
                     domains={"Q": "general"}, builtin=True,
                 chain=_GRAM_CHAINS.get((obj_name, variant)))
