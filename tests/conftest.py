"""Test options: `pytest --update` rewrites the golden files' expectations from the current output."""


def pytest_addoption(parser):
    parser.addoption("--update", action="store_true", default=False,
                     help="rewrite the CHECK/ERROR lines of tests/golden/**/*.att from the current output")
