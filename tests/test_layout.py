"""The layout stays readable: small modules (the import layers are `make lint`'s)."""

from __future__ import annotations

from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1] / "service"
MAX_LINES = 400


def test_no_module_of_the_service_is_over_400_lines() -> None:
    too_long = {
        str(path.relative_to(SERVICE.parent)): lines
        for path in SERVICE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"split these along what they own: {too_long}"
