"""`matgrad bench batch`: see matgrad_jax/bench/batch.py (run with --help for the options)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from matgrad_jax.bench.batch import main  # noqa: E402

if __name__ == "__main__":
    main()
