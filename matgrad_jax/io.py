"""Safe reading (no pickle) and atomic writing."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ._checks import InputError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def atomic_write_npz(path, **arrays) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays from ``.npz`` / ``.npy`` (``allow_pickle=False``) or MATLAB ``.mat`` (scipy)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"DATA: no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".npy":
            return {path.stem: np.load(path, allow_pickle=False)}
        if suffix == ".mat":
            try:
                import scipy.io
            except ImportError:
                raise InputError("DATA: reading .mat files needs scipy (pip install "
                                 "'matgrad-jax[cli]')") from None
            raw = scipy.io.loadmat(path)
            return {k: v for k, v in raw.items() if not k.startswith("__")}
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(f"DATA: {path.name} holds pickled/object arrays, which are not "
                             "read (security)") from None
        raise InputError(f"DATA: cannot read {path.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files raise anything
        raise InputError(f"DATA: cannot read {path.name}: {type(exc).__name__}: {exc}") from None
    raise InputError(f"DATA: unsupported file type {suffix!r} (expected .npz, .npy or .mat)")
