"""Property tests: random and mutated programs never crash the front end with anything
but a diagnostic (AttractorError)."""
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attractor import AttractorError, compile_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [p.read_text() for p in sorted((ROOT / "examples").glob("*.att"))]

TOKENS = ["data", "param", "net", "const", "model", "guide", "sampler", "divergence", "minimize",
          "maximize", "estimate", "subject", "to", "report", "train", "via", "from", "E[", "sum[",
          "x", "y", "z", "w", "p", "q", "g", "u", "real", "real[3]", "mlp(3, 4, 1)", "Normal(0, 1)",
          "Bernoulli(logits=", "KL(", "JS(", "||", "|", "(", ")", "[", "]", ",", ":", "=", "==",
          "<=", "~", "+", "-", "*", "/", "^", "@", "log", "exp", "sumsq(", "dot(", "1", "0.5",
          "1e-3", "\n", "\n    ", "\t", "#c\n", "'s'", '"t"', "steps=3", "adam(lr=1e-3)", "__x", "lambda"]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _compiles_or_diagnoses(text: str) -> None:
    try:
        compile_source(text, filename="fuzz.att")
    except AttractorError as e:
        rendered = str(e)
        assert rendered.startswith("fuzz.att:"), rendered
        assert ": error: " in rendered.splitlines()[0]


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_random_token_soup(text):
    _compiles_or_diagnoses(text)


@SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_random_text(text):
    _compiles_or_diagnoses(text)


@st.composite
def mutated_example(draw):
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        insert = draw(st.sampled_from(TOKENS + ["", " ", "x", "9"]))
        text = text[:i] + insert + text[j:]
    return text


@SETTINGS
@given(mutated_example())
def test_mutated_examples(text):
    _compiles_or_diagnoses(text)


# ---- data files and command lines (issue 19) ---------------------------------------------------

FIELDS = ["1", "-2.5", "3e2", "nan", "inf", "-inf", "1e39", "1_000", "oops", "", " ", "0x10", "1e-3", '"4"']


@SETTINGS
@given(st.lists(st.lists(st.sampled_from(FIELDS), min_size=0, max_size=4), max_size=6))
def test_random_csv_files_load_finite_or_diagnose(tmp_path_factory, rows):
    """NaN, infinities, strings, ragged and empty rows: finite float32 data or a DatasetError."""
    import numpy as np

    from compiler.data.datasets import DatasetError, load
    folder = tmp_path_factory.mktemp("csv")
    (folder / "d.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    try:
        data = load("csv", ["d.csv"], {}, [("x", (2,)), ("y", ())], folder)
    except DatasetError as e:
        assert str(e).startswith("csv: "), e
        return
    assert all(np.isfinite(a).all() and a.shape[0] > 0 for a in data.values())


ARGS = ["p.att", "missing.att", ".", "--show", "ir", "field", "--format", "json", "latex", "--emit", "jax",
        "-o", "out.py", "--via", "jensen(iwae=1e12)", 'csv("\\x")', "--bogus", "--steps", "2**40", "--seed", "-1"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["compile", "explain"]), st.lists(st.sampled_from(ARGS), max_size=6))
def test_random_command_lines_diagnose(tmp_path, monkeypatch, capsys, command, argv):
    """No traceback, no internal error; exit 0, or 1 with `...: error:`; the program is never overwritten."""
    from compiler.driver.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.att").write_text("param w : real = 1\nminimize (w - 2)^2\n")
    try:
        code = main([command, *argv])
    except SystemExit as e:   # argparse: usage errors
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 1), (code, err)
    assert code == 0 or "error:" in err
    assert (tmp_path / "p.att").read_text().startswith("param w")
