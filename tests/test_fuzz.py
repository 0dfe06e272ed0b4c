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
