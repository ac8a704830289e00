import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

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
