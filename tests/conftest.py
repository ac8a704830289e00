import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

import matgrad_jax.audit.verdict as _verdict  # noqa: E402

_verdict.STRICT = True  # every report the suite produces is checked for self-consistency
