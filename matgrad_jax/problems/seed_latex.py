r"""The seeds' derivations read from their own LaTeX (:func:`check_seed_latex`): the seed files
shipped with the package (``problems/seed_texts/``, verbatim from ``shared/seeds/``) and the
symbols each needs bound by name (what the LaTeX dialect cannot express: sums over SVD factors,
masks, the top singular pair)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax.numpy as jnp

from ..identities import J2
from . import channel, gram

if TYPE_CHECKING:
    from ..audit.derivation_report import DerivationReport

CH = f"seeds/{channel.SEED_FILE}"
GR = f"seeds/{gram.SEED_FILE}"

SEED_TEXTS = {"channel": channel.SEED_FILE, "gram": gram.SEED_FILE}


def seed_text(which: str) -> str:
    """The seed file's text as it stands (``which``: ``"channel"`` or ``"gram"``), shipped with
    the package (``problems/seed_texts/``, copied verbatim from ``shared/seeds/``)."""
    from pathlib import Path

    from ..audit.latex import seed_text as read

    if which not in SEED_TEXTS:
        from .._checks import InputError

        raise InputError(f"which: expected one of {tuple(SEED_TEXTS)}, got {which!r}")
    return read(Path(__file__).parent / "seed_texts" / SEED_TEXTS[which])


def _channel_symbols(seed=0, dtype=jnp.float64):
    R, Q, A, B, Z, P, S, W = channel.example_args(seed, dtype=dtype)
    dt = A.dtype

    def ef(i):
        return lambda R, Q, A, B, Z, P, S, W: channel.literal._svd_route(R, Q, A, B, Z, P, S, W)[i]

    return dict(R=R, Q=Q, A=A, B=B, Z=Z, P=P, S=S, W=W, I_2=jnp.eye(2, dtype=dt),
                J_2=jnp.asarray(J2, dt), I=lambda Z: jnp.eye(Z.shape[0], dtype=Z.dtype),
                I_Q=lambda R: jnp.eye(R.shape[0], dtype=R.dtype), E=ef(1), F=ef(2))


def _gram_symbols(seed=0, dtype=jnp.float64):
    B, Q = gram.example_args(seed, dtype=dtype)

    def top(i):
        def f(B, Q):
            u, _, vt = jnp.linalg.svd(gram.residual(B, Q))
            return (u[:, :1], vt[:1].T)[i]
        return f

    return {"B": B, "Q": Q, "u_1": top(0), "v_1": top(1)}


def check_seed_latex(name: str, **options: Any) -> DerivationReport:
    r"""Read a seed's derivation from its own LaTeX and check it line by line
    (:func:`~matgrad_jax.audit.latex.check_derivation_latex`; needs the ``latex`` extra).

    ``name``: ``"channel/phi"`` (seed 1's answer; ``E``, ``F`` — sums over SVD factors, outside
    the dialect — and the masks ``I``, ``I_Q`` bound by name; ``dQ = 0`` for the line the answer
    reads with "set dQ=0"), ``"gram/frobenius"`` or ``"gram/spectral"`` (seed 2's two norms,
    ``u_1``, ``v_1`` bound to the top singular pair)."""
    from ..audit.latex import check_derivation_latex

    data = dict.fromkeys(channel.DATA_NAMES, "general")
    table = {
        "channel/phi": lambda: check_derivation_latex(
            seed_text("channel"), channel.objective, _channel_symbols(), wrt=("R", "Q"),
            assumes={"2(AD+E):dR": "dQ = 0"}, domains=data, name="channel/phi (LaTeX)",
            source=f"{CH}:10", **options),
        "gram/frobenius": lambda: check_derivation_latex(
            seed_text("gram"), gram.frobenius, _gram_symbols(), wrt="B", blocks=[1],
            domains={"Q": "general"}, name="gram/frobenius (LaTeX)", source=f"{GR}:18",
            **options),
        "gram/spectral": lambda: check_derivation_latex(
            seed_text("gram"), gram.spectral, _gram_symbols(), wrt="B", blocks=[2, 3],
            domains={"Q": "general"}, name="gram/spectral (LaTeX)", source=f"{GR}:18",
            **options),
    }
    if name not in table:
        from .._checks import InputError

        raise InputError(f"name: expected one of {tuple(table)}, got {name!r}")
    return table[name]()
