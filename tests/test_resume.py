"""A fit killed with SIGKILL mid-run resumes from its last checkpoint to the same answer."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np


def _cli(*args):
    return [sys.executable, "-m", "matgrad_jax", *map(str, args)]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    data = tmp_path / "ill.npz"
    subprocess.run(_cli("example", "--out", data, "--n", 30, "--m", 20, "--k", 40, "--q", 50,
                        "--p-condition", 1000), check=True, env=env, capture_output=True)
    fit = ("fit", data, "--method", "alternating", "--max-iters", 4000)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*fit, "--out", killed, "--checkpoint-every", 1), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoint.npz"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # let it get a few iterations further
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert ckpt.exists() and not (killed / "solution.npz").exists()
    with np.load(ckpt) as z:
        stopped_at = json.loads(str(z["meta"]))["iteration"]
    assert 0 < stopped_at < 4000
    # no stray temporary files from an interrupted atomic write are mistaken for results
    assert {p.name for p in killed.iterdir() if not p.name.startswith(".")} == {"checkpoint.npz"}

    resumed = subprocess.run(_cli(*fit, "--out", killed, "--resume"), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    subprocess.run(_cli(*fit, "--out", whole), check=True, env=env, capture_output=True)

    a, b = np.load(killed / "solution.npz"), np.load(whole / "solution.npz")
    np.testing.assert_array_equal(a["H"], b["H"])
    ha = json.loads((killed / "history.json").read_text())
    hb = json.loads((whole / "history.json").read_text())
    assert ha["resumed"] and ha["iterations"] == hb["iterations"] == 4000
    assert ha["values"] == hb["values"]
    assert not ckpt.exists()
