"""`distill` exits on the first Ctrl-C (status 130, within seconds) and the rerun resumes.

Its crops come from a Python generator (`tf.data.Dataset.from_generator`)
that tf.data runs on its own thread. An iterator destroyed while that thread
was in the generator hung the process at 0% CPU after "Interrupted" (a
2-core AVX2 EPYC, where decoding the crops keeps the generator busy). Here
the generator is made slow the same way (a busy Python loop per crop, in the
child process only), so that SIGINT finds it mid-item; before the fix
every such run hung.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.helpers.train import REPO, env, make_pairs
from tests.training.test_distill import _flags

STEPS = 12

#: The distill command with each crop taking 0.1 s of Python (holding the GIL).
SLOW_DISTILL = """
import sys, time
from tf_deraindrop.training.distill import inputs
item = inputs.CropStream._item
def slow_item(*args):
    start = time.perf_counter()
    while time.perf_counter() - start < 0.1:
        pass
    return item(*args)
inputs.CropStream._item = slow_item
from tf_deraindrop.cli.distill import main
sys.exit(main(sys.argv[1:]))
"""


def test_first_ctrl_c_exits_130_within_seconds_and_the_rerun_resumes(generator_file, tmp_path):
    from tf_deraindrop.cli import distill

    pairs = make_pairs(tmp_path / "pairs", count=4, size=40)
    out_dir = str(tmp_path / "run")
    flags = _flags(generator_file, pairs, out_dir, steps=STEPS, **{"steps-per-epoch": STEPS})
    index = os.path.join(out_dir, "checkpoints", "checkpoint")
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_DISTILL, *flags],
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        # The first checkpoint (step 2 of the epoch's 12): training is under way.
        while not (os.path.isfile(index) and "ckpt-" in open(index).read()):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError("distill still running 60 s after one Ctrl-C") from None
        waited = time.monotonic() - sent
    finally:
        process.kill()
        process.wait(30)
    stderr = process.stderr.read()
    assert process.returncode == 130, stderr[-3000:]
    assert "Interrupted" in stderr
    assert waited < 20, f"exited {waited:.1f} s after Ctrl-C"

    # The same command again: it resumes mid-epoch and finishes the run.
    assert distill.main(flags) == 0
    record = json.load(open(os.path.join(out_dir, "config.json")))
    assert 0 < record["resolved"]["resumed_from_step"] < STEPS
    assert os.path.isfile(os.path.join(out_dir, "generator.keras"))
