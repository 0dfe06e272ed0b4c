"""Data parallelism: the emitted step on 4 (forced host) devices equals the 1-device step."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
import jax, numpy as np
from jax.flatten_util import ravel_pytree
from attractor import compile_file
prog = compile_file(sys.argv[1])
mod = prog.build()
data = mod.as_data(prog.load_data())
key = jax.random.PRNGKey(0)
state = mod.init_state(mod.init(key))
batch = mod.minibatch(data, jax.random.PRNGKey(1), int(sys.argv[2]))
for i in range(3):
    state, losses = mod.step(state, jax.random.fold_in(key, i), batch)
flat = np.asarray(ravel_pytree(state["params"])[0], np.float64)
print(json.dumps({"devices": len(jax.devices()), "params": flat.tolist(),
                  "losses": {k: float(v) for k, v in losses.items()}}))
"""


def _start(program, batch, devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(program), str(batch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _result(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("program, batch", [(Path(__file__).with_name("small_vae.att"), 16),   # vae.att in small
                                            (ROOT / "examples" / "least_squares.att", 64)])
def test_four_devices_equal_one(program, batch):
    started = [_start(program, batch, devices) for devices in (1, 4)]   # both at once
    one, four = (_result(p) for p in started)
    assert one["devices"] == 1 and four["devices"] == 4
    np.testing.assert_allclose(four["params"], one["params"], rtol=1e-4, atol=1e-5)
    for k in one["losses"]:
        assert four["losses"][k] == pytest.approx(one["losses"][k], rel=1e-4, abs=1e-5)
