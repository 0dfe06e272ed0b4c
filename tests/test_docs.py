"""Every docs page shows what the compiler prints today, and its training picture."""
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))
import build  # noqa: E402
import plots  # noqa: E402


@pytest.mark.parametrize("page", build.pages(), ids=lambda p: p.name)
def test_page_is_current(page):
    text = page.read_text()
    assert build.refresh(text) == text, f"{page.name} is stale: run `python docs/build.py`"


@pytest.mark.parametrize("page", sorted(plots.PLOTS))
def test_page_shows_its_training_picture(page):
    example, picture = plots.PLOTS[page]
    assert f"]({picture})" in (DOCS / page).read_text()
    assert (DOCS / picture).stat().st_size > 1000
    assert (DOCS.parent / "examples" / example).exists()
