"""Atomic writing: files, result sets written as one, the output lock and checkpoints (no
pickle). Reading data files is :mod:`matgrad_jax.data_files`, re-exported here."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ._checks import InputError
from .data_files import (  # re-exported: the readers' old home
    DEFAULT_MAX_ARRAY_BYTES,
    array_names,
    fingerprint,
    load_arrays,
)

__all__ = ["DEFAULT_MAX_ARRAY_BYTES", "LOCK_NAME", "RESULT_FILES", "OutputLock", "array_names",
           "atomic_write_bytes", "atomic_write_json", "atomic_write_npz", "atomic_write_text",
           "check_out_dir", "fingerprint", "load_arrays", "load_tree", "npz_bytes",
           "save_tree", "write_result_set"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_file(path: Path, data: bytes) -> None:
    """``data`` to a new file at ``path`` (mode 0666 less the umask), flushed and fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask())
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``. The file
    gets the mode the umask gives (not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def npz_bytes(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def atomic_write_npz(path, **arrays) -> None:
    atomic_write_bytes(path, npz_bytes(**arrays))


# -- an output folder: checked first, locked while in use, its result set written as one ------

CHECKPOINT_FORMAT = "matgrad-checkpoint/2"
"""A checkpoint's ``format``: 2 since solver states are NamedTuples (their leaves are stored in
field order, :mod:`matgrad_jax.solvers.state`); a checkpoint of another format is refused with
its format named, never read into the wrong fields."""

LOCK_NAME = ".matgrad.lock"


def check_out_dir(out: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuse, before any work, an output folder that cannot receive results: an existing file,
    a dangling symbolic link, or a folder (or nearest existing parent) that is not writable."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise InputError(f"{flag} {out}: a dangling symbolic link (to {os.readlink(out)}); "
                         "expected a folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"{flag} {out}: exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{flag} {out}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {out}: {probe} is not writable")
    return out


class OutputLock:
    """An exclusive lock on an output folder (``fcntl.flock`` on ``DIR/.matgrad.lock``), so that
    two runs never write one folder at once; the second is refused with the holder's pid. While
    held, temporaries that a killed run left behind are removed. A folder this run created and
    left empty is removed again on release."""

    def __init__(self, out: str | os.PathLike, flag: str = "--out"):
        self.out, self.flag = Path(out), flag
        self.created = not self.out.exists()
        self.fd = None

    def __enter__(self):
        import fcntl

        self.out.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = None
            raise InputError(f"{self.flag} {self.out}: another matgrad run (pid {holder}) is "
                             "writing this folder; wait for it or choose another folder") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        self._clean()
        return self

    def _clean(self) -> None:
        import shutil

        # staging folders of a run that was killed (a live run would hold this lock); each
        # holds the new or the old set and hard links to files that are also in the folder
        for p in self.out.parent.glob(f".{self.out.name}.matgrad-*"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
        for name in RESULT_FILES + ("checkpoint.npz",):
            for p in self.out.glob(f".{name}.*"):
                if p.is_file():
                    p.unlink(missing_ok=True)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None
        if self.created:
            rest = [p for p in self.out.iterdir() if p.name != LOCK_NAME]
            if not rest:
                (self.out / LOCK_NAME).unlink(missing_ok=True)
                try:
                    self.out.rmdir()
                except OSError:
                    pass
        return False


RESULT_FILES = ("solution.npz", "history.json", "convergence.png")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    platform or the filesystem cannot."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def write_result_set(out: str | os.PathLike, files: dict[str, bytes], remove=()) -> None:
    """Write ``files`` into the folder ``out`` as one set: a reader (or a run killed at any
    moment) sees the whole old set or the whole new one, never a mix.

    The new set is written into a staging folder beside ``out`` with hard links to everything
    else ``out`` holds (not to the names in ``remove``), then the two folders are swapped in one
    atomic ``renameat2(RENAME_EXCHANGE)`` and the old one removed. Where that cannot be done (not
    Linux, no hard links, subfolders in ``out``, an unwritable parent) each file is replaced
    atomically on its own, ``history.json``-style metadata last.
    """
    import shutil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parent = out.parent
    swap = os.access(parent, os.W_OK | os.X_OK) and not any(
        p.is_dir() and not p.is_symlink() for p in out.iterdir())
    stage = None
    if swap:
        try:
            stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.matgrad-", dir=parent))
            for name, data in files.items():
                _write_file(stage / name, data)
            for p in out.iterdir():
                if p.name not in files and p.name not in remove:
                    os.link(p, stage / p.name, follow_symlinks=False)
            os.chmod(stage, os.stat(out).st_mode & 0o7777)
            _fsync_dir(stage)
            if _exchange(stage, out):
                _fsync_dir(parent)
                shutil.rmtree(stage, ignore_errors=True)  # the old set
                return
        except OSError:
            pass
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    for name in remove:
        (out / name).unlink(missing_ok=True)


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
