"""The workflow of a training run (SPEC section 9.6): run --save, eval, sample, --checkpoint / --resume
(after kill -9, bit-identical to an uninterrupted run), and the diagnostics of files that do not fit."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LASSO = str(ROOT / "examples" / "lasso.att")
SMALL_GAN = """# gan_ring.att in small: nets of width 16, 512 points
data x : real[2] from ring8(n=512)
net gen : mlp(2, 16, 16, 2)
sampler g:
    eps ~ Normal(0, 1) : real[2]
    x = gen(eps)
minimize JS(data, g) via classifier_ratio(nonsaturating)
train steps=100, batch=64, optimizer=adam(lr=1e-3, b1=0.5), dynamics=simultaneous
"""


def cli(*args, cwd):
    """The command line in a process of its own (where the process is what is tested)."""
    r = subprocess.run([sys.executable, "-m", "compiler", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def attractor(capsys, monkeypatch):
    """The command line called in this process (compiler.driver.cli.main): what it prints and its exit code."""
    from compiler.driver.cli import main

    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return subprocess.CompletedProcess(args, code, out, err)
    return run


@pytest.fixture
def gan(tmp_path):
    path = tmp_path / "gan.att"
    path.write_text(SMALL_GAN)
    return str(path)


def test_save_then_eval_gives_the_run_objective(tmp_path, attractor):
    run = attractor("run", LASSO, "--steps", "300", "--json", "--save", "p.npz", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    saved = np.load(tmp_path / "p.npz")
    assert saved.files == ["w"] and saved["w"].shape == (50,)
    ev = attractor("eval", LASSO, "--params", "p.npz", "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    ran, evaluated = json.loads(run.stdout), json.loads(ev.stdout)
    assert evaluated["objective"] == ran["objective"] and evaluated["reports"] == ran["reports"]
    assert "steps" not in evaluated


def test_net_parameters_are_named_by_path(tmp_path, attractor, gan):
    r = attractor("run", gan, "--steps", "0", "--json", "--save", "g.npz", cwd=tmp_path)   # the initial nets, no verdict
    assert r.returncode == 0, r.stderr
    names = set(np.load(tmp_path / "g.npz").files)
    assert {"gen/0/w", "gen/0/b", "gen/2/w"} <= names
    s = attractor("sample", gan, "--params", "g.npz", "-n", "7", "-o", "draws.npy", cwd=tmp_path)
    assert s.returncode == 0, s.stderr
    assert np.load(tmp_path / "draws.npy").shape == (7, 2)


def test_a_parameter_file_of_another_shape_is_a_diagnostic_and_overwrites_nothing(tmp_path, attractor, gan):
    np.savez(tmp_path / "bad.npz", w=np.zeros(3, np.float32))
    np.savez(tmp_path / "none.npz", v=np.zeros(50, np.float32))
    (tmp_path / "out.npy").write_bytes(b"keep")
    r = attractor("eval", LASSO, "--params", "bad.npz", cwd=tmp_path)
    assert r.returncode == 1 and "'w' has shape (3,), the program's is (50,)" in r.stderr
    assert str(tmp_path / "bad.npz") in r.stderr   # the resolved path
    r = attractor("eval", LASSO, "--params", "none.npz", cwd=tmp_path)
    assert r.returncode == 1 and "has no array 'w'" in r.stderr
    r = attractor("sample", gan, "--params", "none.npz", "-n", "3", "-o", "out.npy", cwd=tmp_path)
    assert r.returncode == 1 and (tmp_path / "out.npy").read_bytes() == b"keep"
    r = attractor("eval", LASSO, "--params", "missing.npz", cwd=tmp_path)
    assert r.returncode == 1 and f"cannot read {tmp_path / 'missing.npz'}" in r.stderr


def test_a_checkpoint_of_another_program_is_refused(tmp_path, attractor):
    assert attractor("run", LASSO, "--steps", "50", "--json", "--checkpoint", "ck", cwd=tmp_path).returncode == 0
    before = (tmp_path / "ck" / "checkpoint.npz").read_bytes()
    other = tmp_path / "other.att"
    other.write_text(Path(LASSO).read_text().replace("const lam = 0.05", "const lam = 0.06"))
    r = attractor("run", other, "--steps", "50", "--checkpoint", "ck", "--resume", cwd=tmp_path)
    assert r.returncode == 1 and "checkpoint of another program" in r.stderr
    r = attractor("run", LASSO, "--steps", "50", "--checkpoint", "ck", cwd=tmp_path)
    assert r.returncode == 1 and "--resume" in r.stderr
    assert (tmp_path / "ck" / "checkpoint.npz").read_bytes() == before


@pytest.mark.slow
def test_resume_after_kill_9_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    steps = "60000"
    (tmp_path / "whole").mkdir()
    whole = subprocess.Popen([sys.executable, "-m", "compiler", "run", LASSO, "--steps", steps, "--json", "--save", "whole.npz"],
                             cwd=tmp_path / "whole", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)   # meanwhile
    checkpoint = tmp_path / "ck" / "checkpoint.npz"
    args = [sys.executable, "-m", "compiler", "run", LASSO, "--steps", steps, "--json", "--checkpoint", "ck",
            "--every", "0.05", "--save", "cut.npz"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)     # at the first checkpoint (written atomically: it is whole once it exists)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed: make it longer"
    assert not (tmp_path / "cut.npz").exists()
    step = int(np.load(checkpoint)["step"])
    assert 0 < step < int(steps)
    resumed = cli("run", LASSO, "--steps", steps, "--json", "--checkpoint", "ck", "--resume", "--save", "cut.npz",
                  cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    whole_out, whole_err = whole.communicate(timeout=300)
    assert whole.returncode == 0 and "Traceback" not in whole_err, whole_err
    a, b = np.load(tmp_path / "whole" / "whole.npz"), np.load(tmp_path / "cut.npz")
    assert a.files == b.files
    for name in a.files:
        assert np.array_equal(a[name], b[name]), name
        assert a[name].tobytes() == b[name].tobytes()
    assert json.loads(resumed.stdout)["objective"] == json.loads(whole_out)["objective"]


@pytest.mark.parametrize("command", ["compile", "run", "eval", "sample", "check", "explain", "field"])
def test_every_option_has_a_help_text(command):
    from compiler.driver.cli import _parser
    sub = next(a for a in _parser()._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
