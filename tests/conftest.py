"""Test options: `pytest --update` rewrites the golden files' expectations from the current output.

The suite compiles hundreds of programs and checks the derivations rule order makes: it runs with
ATTRACTOR_NO_SEARCH set (compiler.driver.api.search_by_default), in this process and in the
commands it starts; the tests of the search (tests/test_rank.py) ask for it or unset the variable."""
import os

from compiler.driver.api import NO_SEARCH_VARIABLE

os.environ[NO_SEARCH_VARIABLE] = "1"


def pytest_addoption(parser):
    parser.addoption("--update", action="store_true", default=False,
                     help="rewrite the CHECK/ERROR lines of tests/golden/**/*.att from the current output")
