import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# One XLA compilation cache for the whole run: the suite's processes (xdist workers, the CLI,
# notebook kernels, benchmark and subprocess tests inherit the environment) compile many of the
# same programs, and most of the suite's time is compiling. It starts empty in each run, so no
# test sees a program compiled by an earlier run, and it goes when the run ends. Setting
# JAX_COMPILATION_CACHE_DIR yourself keeps your own (or "" switches it off in jax). The size cap
# turns on jax's file lock (the filelock package), so concurrent writers never leave a reader a
# half-written entry.
try:
    import filelock  # noqa: F401
except ImportError:  # without the lock, run without the cache rather than risk a torn entry
    filelock = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and filelock is not None:
    _cache_dir = tempfile.mkdtemp(prefix="matgrad-test-xla-cache-")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(16 << 30))

# XLA:CPU tuned for compile time: the suite is mostly compiling small programs. The LLVM back
# end at its lowest optimisation level takes about a quarter off the suite's time, and the
# classic elemental emitters for fusions (instead of the MLIR fusion emitters) about 40% off
# each compile of a solver's program (the same HLO passes run, with the same floating-point
# semantics; only the machine code is less tuned). Benchmarks and the package never set them.
# Tests that build an environment of their own pass SUITE_XLA_FLAGS on.
SUITE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["MATGRAD_SUITE_XLA_FLAGS"] = SUITE_XLA_FLAGS
_flags = os.environ.get("XLA_FLAGS", "")
for _flag in SUITE_XLA_FLAGS.split():
    if _flag.split("=")[0] not in _flags:  # a caller's own setting of a flag wins
        _flags = f"{_flags} {_flag}".strip()
os.environ["XLA_FLAGS"] = _flags

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

import matgrad_jax.audit.verdict as _verdict  # noqa: E402

_verdict.STRICT = True  # every report the suite produces is checked for self-consistency


# Files whose module fixtures or subprocesses take a minute or more run first, so that with
# pytest-xdist (make test: a file per worker) neither worker is left with one at the end.
_LONG_FILES = ("test_channel.py", "test_scale.py", "test_benchmarks_smoke.py", "test_cli.py",
               "test_notebooks.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file
