"""Every docs page shows what the compiler prints today."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
import build  # noqa: E402


@pytest.mark.parametrize("page", build.pages(), ids=lambda p: p.name)
def test_page_is_current(page):
    text = page.read_text()
    assert build.refresh(text) == text, f"{page.name} is stale: run `python docs/build.py`"
