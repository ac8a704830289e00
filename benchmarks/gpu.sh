#!/usr/bin/env bash
# The benchmark suite on a GPU, at the larger sizes the issue asks for (n = m = 4096), from the
# source tree (no install needed, only jax with CUDA and optax):
#     PYTHONPATH=. bash benchmarks/gpu.sh [gradient spectral audit batch solvers]  (default: these)
# and the optional parts gradient-highest and batch-large (65536 problems).
# Writes benchmarks/results/*_gpu_*.json like the CPU runs; then `matgrad bench plots` and
# `matgrad bench report README.md` (on any machine) redraw the plots and the README tables.
# The gradient kernels follow the caller's matmul precision: XLA's default, which on NVIDIA GPUs
# runs float32 products on TF32 tensor cores; the fitting code and the audit use "highest"
# (matgrad_jax.precision). The JSON records both (machine.matmul_precision,
# machine.fit_matmul_precision). `gradient-highest` times the gradients with true float32
# products (JAX_DEFAULT_MATMUL_PRECISION=highest; slow: one run on an H100 did not finish the
# second size within 200 s).
# With $OUT set (a folder), every finished benchmark's JSON is also packed into $OUT/results.tgz,
# so a run cut short keeps what it finished.
set -u
export PYTHONPATH="${PYTHONPATH:-.}" PYTHONUNBUFFERED=1
PY="${PY:-python3}"
R=benchmarks/results
parts="${*:-gradient spectral audit batch solvers}"
want() { [[ " $parts " == *" $1 "* ]]; }
run() {  # a failure or a timeout of one benchmark does not stop the others
  echo "== $*"
  local t0=$SECONDS
  timeout "${BENCH_TIMEOUT:-900}" "$PY" "$@" || echo "!! FAILED (exit $?): $*"
  echo "== $(( SECONDS - t0 )) s"
  if [[ -n ${OUT:-} ]]; then tar czf "$OUT/results.tgz" $R/*_gpu*.json 2>/dev/null; fi
}
highest() { JAX_DEFAULT_MATMUL_PRECISION=highest run "$@"; }

if want gradient; then
  run benchmarks/bench_gradient.py --dtype float32 --repeats 9 --sizes 512,512,1024,2048 \
    2048,2048,4096,8192 4096,4096,8192,16384 4096,4096,8192,4096 4096,4096,8192,65536
  run benchmarks/bench_gradient.py --dtype float64 --repeats 7 --sizes 512,512,1024,2048 \
    2048,2048,4096,8192 4096,4096,8192,16384 4096,4096,8192,4096
fi
if want gradient-highest; then
  highest benchmarks/bench_gradient.py --dtype float32 --repeats 5 --sizes 512,512,1024,2048 \
    2048,2048,4096,8192 --out $R/gradient_gpu_float32_highest.json
fi
if want spectral; then
  run benchmarks/bench_spectral.py --dtype float64 --repeats 3 --sizes 256 512 1024 2048 4096
fi
if want audit; then
  run benchmarks/bench_audit.py --n 512
  run benchmarks/bench_audit.py --n 512 --matmul-precision none --out $R/audit_gpu_tf32.json
fi
if want batch; then
  # one process each, as the committed GPU runs were timed (the CPU runs take the median of five
  # fresh processes, whose loops differ by up to 2.5x there; on the GPU the ratio is 2000x+)
  # and --seconds 1: four seconds of rounds per method are for the CPU's two-speed episodes
  run benchmarks/bench_batch.py --dtype float64 --processes 1 --seconds 1
  run benchmarks/bench_batch.py --dtype float32 --processes 1 --seconds 1
fi
if want solvers; then
  run benchmarks/bench_solvers.py --dtype float64 --size 1024,512,1024,2048
  run benchmarks/bench_solvers.py --dtype float32 --size 1024,512,1024,2048
fi
if want batch-large; then
  run benchmarks/bench_batch.py --dtype float32 --batch 65536 --loop-sample 256 --processes 1 \
    --out $R/batch_gpu_float32_65536.json
fi
