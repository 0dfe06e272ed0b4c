"""Data outside the support of a model whose log-density the program takes: a located error at
the `~` line, exit code 1, no traceback (compiler/driver/data_support.py)."""
import pytest

from compiler.driver.cli import main

MODELS = {
    "lognormal": ("x ~ LogNormal(mu, 1)", "-0.5\n1.0\n2.0\n", "1 of the 3 values of data x is outside the support of "
                  "LogNormal (x > 0), e.g. -0.5"),
    "bernoulli": ("x ~ Bernoulli(logits=mu)", "0\n1\n2\n0.5\n", "2 of the 4 values of data x are outside the support "
                  "of Bernoulli (x in {0, 1}), e.g. 2, 0.5"),
    "categorical": ("x ~ Categorical(logits=[mu, 0, 0])", "0\n1\n1.5\n", "outside the support of Categorical"),
    "uniform": ("x ~ Uniform(-1, 1)", "0.5\n-2\n", "outside the support of Uniform (-1 <= x <= 1), e.g. -2"),
}


def program(tmp_path, law: str, rows: str, objective: str) -> str:
    (tmp_path / "x.csv").write_text(rows)
    src = tmp_path / "p.att"
    src.write_text(f"param mu : real\ndata x : real from csv(\"x.csv\")\nmodel p:\n    {law}\n{objective}\n")
    return str(src)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_data_outside_the_support_is_refused_at_the_line_that_observes_them(tmp_path, capsys, name):
    law, rows, message = MODELS[name]
    src = program(tmp_path, law, rows, "minimize E[x ~ data] -log p(x)")
    assert main(["run", src, "--no-search"]) == 1
    err = capsys.readouterr().err
    assert "p.att:4:5: error: " in err and message in err and "Traceback" not in err
    assert err.rstrip().endswith("^")


def test_maximum_likelihood_by_kl_is_checked_too(tmp_path, capsys):
    src = program(tmp_path, "x ~ LogNormal(mu, 1)", "-0.5\n1.0\n", "minimize KL(data || p)")
    assert main(["run", src, "--no-search"]) == 1
    assert "outside the support of LogNormal" in capsys.readouterr().err


@pytest.mark.parametrize("rows, objective", [("0.5\n1.0\n2.0\n", "minimize E[x ~ data] -log p(x)"),
                                             ("-0.5\n1.0\n2.0\n", "estimate JS(data, p)")])
def test_data_inside_the_support_or_a_bounded_divergence_is_not_refused(tmp_path, capsys, rows, objective):
    """Positive data under a LogNormal run; JS(data, p) stays finite where p vanishes, so data
    outside p's support are allowed there."""
    src = program(tmp_path, "x ~ LogNormal(mu, 1)", rows, objective)
    assert main(["run", src, "--no-search", "--steps", "20"]) in (0, 3) and "error:" not in capsys.readouterr().err
