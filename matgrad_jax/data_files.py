"""Reading users' data files safely: ``.npz``/``.npy`` without pickle, MATLAB ``.mat`` (scipy;
h5py for -v7.3), every array bounded in size before it is read; and the fingerprint that ties a
checkpoint to its data. Writing (atomic, as a set) is :mod:`matgrad_jax.io`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._checks import InputError

DEFAULT_MAX_ARRAY_BYTES = 4 * 2**30
"""The most bytes one array of a data file may take once read (``--max-array-mib``)."""


def _cap_error(path: Path, name: str, size: int, cap: int) -> InputError:
    return InputError(f"DATA: {name} in {path.name} takes {size / 2**20:.1f} MiB once read, over "
                      f"the cap of {cap / 2**20:.0f} MiB (raise it with --max-array-mib, or "
                      "max_bytes=)")


def load_arrays(path: str | os.PathLike, names=None, *,
                max_bytes: int = DEFAULT_MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """Arrays from ``.npz`` / ``.npy`` (``allow_pickle=False``) or MATLAB ``.mat`` (scipy; h5py
    for -v7.3).

    ``names``: read only these (absent ones are simply missing from the result); None reads
    all. Nothing else is decompressed, and no array larger than ``max_bytes`` once read is read
    at all (a small file can inflate to gigabytes). Duplicate member names are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"DATA: no such file: {path}")
    suffix = path.suffix.lower()
    wanted = None if names is None else set(names)
    try:
        if suffix == ".npz":
            return _load_npz(path, wanted, max_bytes)
        if suffix == ".npy":
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(fh))
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if size > max_bytes:
                raise _cap_error(path, path.stem, size, max_bytes)
            return {path.stem: np.load(path, allow_pickle=False)}
        if suffix == ".mat":
            if _is_hdf5(path):
                return _load_mat73(path, wanted, max_bytes)
            try:
                import scipy.io
            except ImportError:
                raise InputError("DATA: reading .mat files needs scipy (pip install "
                                 "'matgrad-jax[cli]')") from None
            sizes = {n: (shape, cls) for n, shape, cls in scipy.io.whosmat(path)}
            keep = [n for n in sizes if wanted is None or n in wanted]
            for n in keep:
                size = int(np.prod(sizes[n][0], dtype=np.int64)) * 16  # complex double at most
                if size > max_bytes:
                    raise _cap_error(path, n, size, max_bytes)
            if not keep:
                return {}
            raw = scipy.io.loadmat(path, variable_names=keep)
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


def array_names(path: str | os.PathLike) -> list[str]:
    """The names of the arrays a data file holds, read from its index (nothing decompressed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            import zipfile

            with zipfile.ZipFile(path) as zf:
                return sorted(n[:-4] if n.endswith(".npy") else n for n in zf.namelist())
        if suffix == ".npy":
            return [path.stem]
        if suffix == ".mat":
            if _is_hdf5(path):
                import h5py

                with h5py.File(path, "r") as f:
                    return sorted(k for k in f if not k.startswith("#"))
            import scipy.io

            return sorted(n for n, _, _ in scipy.io.whosmat(path))
    except Exception:  # noqa: BLE001 - only for messages
        return []
    return []


def _load_npz(path: Path, wanted, max_bytes: int) -> dict[str, np.ndarray]:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    seen, sizes = set(), {}
    for info in infos:
        if info.filename in seen:
            raise InputError(f"DATA: {path.name} holds two members named {info.filename!r}; "
                             "which one is meant is ambiguous")
        seen.add(info.filename)
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        sizes[key] = info.file_size
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            if wanted is not None and key not in wanted:
                continue
            if sizes.get(key, 0) > max_bytes + 4096:  # the .npy header is a few hundred bytes
                raise _cap_error(path, key, sizes[key], max_bytes)
            out[key] = z[key]
    return out


def _is_hdf5(path: Path) -> bool:
    """MATLAB -v7.3 files are HDF5 (signature at offset 0, 512, 1024, ...)."""
    sig = b"\x89HDF\r\n\x1a\n"
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return any(head[o:o + 8] == sig for o in (0, 512, 1024, 2048))


def _load_mat73(path: Path, wanted=None, max_bytes: int = DEFAULT_MAX_ARRAY_BYTES
                ) -> dict[str, np.ndarray]:
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
            if wanted is not None and name not in wanted:
                continue
            if obj.size * obj.dtype.itemsize > max_bytes:
                raise _cap_error(path, name, obj.size * obj.dtype.itemsize, max_bytes)
            a = obj[()]
            if a.dtype.names and {"real", "imag"} <= set(a.dtype.names):
                a = a["real"] + 1j * a["imag"]
            if a.dtype.kind not in "biufc":
                continue
            out[name] = np.asarray(a).T
    return out


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: ties a checkpoint to its data."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.asarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        if a.flags.c_contiguous:
            h.update(a.reshape(-1).view(np.uint8))  # the buffer itself: no copy
        else:  # C order in small buffered chunks, never the whole array at once
            for chunk in np.nditer(a, flags=["external_loop", "buffered", "zerosize_ok"],
                                   order="C", buffersize=1 << 16):
                h.update(np.ascontiguousarray(chunk).tobytes())
    return h.hexdigest()
