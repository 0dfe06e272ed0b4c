#!/usr/bin/env bash
# The GPU check of issue 16, one script, a few minutes: the whole-loop benchmark
# (bench/loops.py: emitted fit / hand-written fori_loop / NumPyro) and the test suite (the
# slow training tests left out), on whatever accelerator JAX finds. Everything it prints is
# also written under $OUT (default bench/device-out): devices.txt, loops.md, tests.txt;
# copy the loops table into bench/RESULTS.md with the device name.
#
#   bash bench/device.sh                 # PYTHON, OUT, SCALE, ROUNDS may be set
set -u
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT=${OUT:-bench/device-out}
mkdir -p "$OUT"
status=0

"$PYTHON" - <<'PY' | tee "$OUT/devices.txt"
import jax
print("jax", jax.__version__, "backend", jax.default_backend(), "devices", jax.devices())
PY

# the loops are short on a GPU: SCALE multiplies every loop's number of steps
"$PYTHON" bench/loops.py --scale "${SCALE:-4}" --rounds "${ROUNDS:-7}" 2>&1 | tee "$OUT/loops.md"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

"$PYTHON" -m pytest -q -m "not slow" -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
