"""Multi-host for real (SPEC section 9.6 / issue 18): two processes on the loopback joined by
jax.distributed (CPU collectives by gloo, one CPU device each) end with the parameters, the loss
history, the objective and the reports, bit for bit, of one process with two devices."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(Path(__file__).with_name("multihost_worker.py"))
VAE = str(Path(__file__).with_name("small_vae.att"))   # vae.att in small: the same features, a fraction of the compilation
STEPS = "30"   # under 100 steps the history has one entry per step, however the calls are cut


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def result(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    assert lines, text[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def environment(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.slow
def test_two_processes_equal_one_process_with_two_devices():
    port = str(free_port())
    workers = [subprocess.Popen([sys.executable, WORKER, VAE, STEPS, "none", str(i), port], cwd=ROOT,
                                env=environment(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    single = subprocess.Popen([sys.executable, WORKER, VAE, STEPS, "1"], cwd=ROOT, env=environment(2),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)   # at the same time
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    alone_output = single.communicate(timeout=300)[0]
    assert single.returncode == 0, alone_output[-3000:]
    first, second, alone = (result(o) for o in (*outputs, alone_output))
    assert first["processes"] == 2 and first["devices"] == 2 and alone["processes"] == 1 and alone["devices"] == 2
    for key in ("params", "history", "objective", "reports"):
        assert first[key] == second[key] == alone[key], key
    assert len(alone["history"]) == int(STEPS)
