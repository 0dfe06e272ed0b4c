"""One process of tests/test_multihost.py: `python multihost_worker.py PROGRAM STEPS CHUNK [PROCESS_ID PORT]`.

With PROCESS_ID and PORT it joins a run of two processes on the loopback (jax.distributed, CPU
collectives by gloo), one CPU device each; without, it runs alone on the devices XLA_FLAGS gives.
Prints one line `RESULT {json}`: a hash of the parameters, the loss history, the objective, the reports.
"""
import hashlib
import json
import sys

import jax

if len(sys.argv) > 4:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[5]}", num_processes=2,
                               process_id=int(sys.argv[4]))

import numpy as np  # noqa: E402

from attractor import compile_file  # noqa: E402

program, steps, chunk = sys.argv[1], int(sys.argv[2]), None if sys.argv[3] == "none" else int(sys.argv[3])
prog = compile_file(program)
mod = prog.build()
data = prog.load_data()
params, history = mod.fit(data, steps, 0, chunk=chunk)
leaves = [np.asarray(jax.device_get(x)) for x in jax.tree.leaves(params)]
summary = mod.summary(params, data, steps, 0.0, 0, None, history)
print("RESULT " + json.dumps({
    "devices": len(jax.devices()), "processes": jax.process_count(),
    "params": hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest(),
    "history": [{k: v for k, v in h.items() if k not in ("seconds", "compile_seconds")} for h in history],
    "objective": summary["objective"], "reports": summary["reports"]}), flush=True)
