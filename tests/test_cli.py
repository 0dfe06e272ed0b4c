"""The command line: compile views and formats, run --json, --data rebinding, explain."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LSQ = str(ROOT / "examples" / "least_squares.att")


def cli(*args, cwd=ROOT):
    r = subprocess.run([sys.executable, "-m", "compiler", *args], capture_output=True, text=True, cwd=cwd)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_derivation_json_has_the_spec_keys():
    r = cli("compile", LSQ, "--show", "derivation", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"objective", "steps", "field"}
    assert d["objective"].startswith("minimize 0.5 * E[(x, y) ~ data]")
    assert set(d["field"]) == {"players", "dynamics"}
    player = d["field"]["players"][0]
    assert set(player) == {"name", "params", "sense", "estimators"}
    assert player["params"] == ["w", "b"] and player["sense"] == "min"
    assert player["estimators"] == {"E[(x, y) ~ data]": "exact"}


@pytest.mark.parametrize("show", ["ir", "derivation", "field"])
@pytest.mark.parametrize("fmt", ["text", "json", "latex"])
def test_every_view_in_every_format(show, fmt):
    r = cli("compile", LSQ, "--show", show, "--format", fmt)
    assert r.returncode == 0, r.stderr
    if fmt == "json":
        json.loads(r.stdout)
    elif fmt == "latex":
        assert "\\begin{aligned}" in r.stdout
    else:
        assert r.stdout.strip()


def test_ir_text_is_deterministic():
    a = cli("compile", LSQ, "--show", "ir").stdout
    b = cli("compile", LSQ, "--show", "ir").stdout
    assert a == b and "player theta (min over w, b)" in a


def test_run_json_line_and_data_rebinding(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 50)).astype(np.float32)
    w = np.zeros(50, np.float32)
    w[:3] = [1, -2, 3]
    np.savez(tmp_path / "d.npz", x=X, y=X @ w + 1.0)
    r = cli("run", LSQ, "--steps", "400", "--json", "--data", 'npz("d.npz")', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["steps"] == 400 and result["estimate"] is None
    assert result["objective"] < 1e-2 and result["reports"]["rmse"] < 0.15


def test_run_shows_derivation_and_progress():
    r = cli("run", LSQ, "--steps", "50")
    assert r.returncode == 0, r.stderr
    assert "objective: minimize" in r.stderr and "50/50" in r.stderr
    assert "report rmse" in r.stdout


def test_explain_says_what_is_intractable():
    r = cli("explain", LSQ)
    assert r.returncode == 0 and "tractable as written" in r.stdout


def test_console_script_is_the_same_command():
    exe = Path(sys.executable).parent / "attractor"
    if not exe.exists():
        pytest.skip("console script not installed")
    r = subprocess.run([str(exe), "compile", LSQ, "--show", "ir"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == cli("compile", LSQ, "--show", "ir").stdout


def test_run_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curve.png"
    r = cli("run", LSQ, "--steps", "100", "--plot", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
