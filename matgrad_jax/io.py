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
            if _is_hdf5(path):
                return _load_mat73(path)
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


def _is_hdf5(path: Path) -> bool:
    """MATLAB -v7.3 files are HDF5 (signature at offset 0, 512, 1024, ...)."""
    sig = b"\x89HDF\r\n\x1a\n"
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return any(head[o:o + 8] == sig for o in (0, 512, 1024, 2048))


def _load_mat73(path: Path) -> dict[str, np.ndarray]:
    """Numeric arrays at the top of a MATLAB -v7.3 (HDF5) file, through h5py.

    MATLAB stores column-major, so each dataset is transposed back; complex arrays are compound
    (``real``, ``imag``). Structs, cells and strings are skipped.
    """
    try:
        import h5py
    except ImportError:
        raise InputError(f"DATA: {path.name} is a MATLAB v7.3 (HDF5) file; reading it needs "
                         "h5py (pip install 'matgrad-jax[cli]')") from None
    out = {}
    with h5py.File(path, "r") as f:
        for name, obj in f.items():
            if not isinstance(obj, h5py.Dataset) or name.startswith("#"):
                continue
            cls = obj.attrs.get("MATLAB_class", b"double")
            cls = cls.decode() if isinstance(cls, bytes) else str(cls)
            if cls in ("char", "cell", "struct", "function_handle"):
                continue
            a = obj[()]
            if a.dtype.names and {"real", "imag"} <= set(a.dtype.names):
                a = a["real"] + 1j * a["imag"]
            if a.dtype.kind not in "biufc":
                continue
            out[name] = np.asarray(a).T
    return out


def save_tree(path, tree, meta: dict) -> None:
    """A pytree of arrays as ``.npz`` (leaves ``leaf_0000``…, plus ``meta`` as JSON text),
    written atomically. The tree structure is not stored: :func:`load_tree` takes a template."""
    import jax

    leaves = jax.tree_util.tree_leaves(tree)
    arrays = {f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
    atomic_write_npz(path, meta=np.array(json.dumps(meta)), **arrays)


def load_tree(path, template, expect: dict | None = None) -> tuple[object, dict]:
    """Read what :func:`save_tree` wrote into the structure of ``template`` (checked leaf by leaf:
    count, shape and dtype), without pickle. Returns ``(tree, meta)``.

    ``expect``: entries the stored ``meta`` must equal; the first that differs is named in the
    :class:`InputError`.
    """
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(template)
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            for k, v in (expect or {}).items():
                if meta.get(k) != v:
                    raise InputError(f"checkpoint {path}: made with {k}={meta.get(k)!r}, this "
                                     f"run has {k}={v!r}")
            stored = [z[f"leaf_{i:04d}"] for i in range(len(leaves))]
            extra = len([f for f in z.files if f.startswith("leaf_")]) - len(leaves)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint raises anything
        raise InputError(f"checkpoint {path}: cannot read ({type(exc).__name__}: {exc})") from None
    if extra:
        raise InputError(f"checkpoint {path}: holds {len(leaves) + extra} arrays, this run's "
                         f"solver state has {len(leaves)}")
    for i, (a, b) in enumerate(zip(stored, leaves)):
        if a.shape != np.shape(b) or a.dtype != np.dtype(b.dtype):
            raise InputError(f"checkpoint {path}: array {i} is {a.dtype}{list(a.shape)}, this "
                             f"run expects {np.dtype(b.dtype)}{list(np.shape(b))}")
    return jax.tree_util.tree_unflatten(treedef, stored), meta


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: ties a checkpoint to its data."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()
