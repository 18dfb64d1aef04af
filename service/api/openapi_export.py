"""Write the app's OpenAPI schema to a file: `python -m service.api.openapi_export PATH`.

`openapi/openapi.json` is the committed contract (DESIGN.md section 4); CI
compares it with what the code serves. Building the app opens no database
(the lifespan does that), so this runs anywhere, with or without one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.api.app import create_app
from service.config import Settings


def openapi_schema() -> dict[str, Any]:
    """The schema the app serves at /openapi.json."""
    return create_app(Settings()).openapi()


def render_openapi() -> str:
    """The schema as the committed file holds it: sorted keys, 2-space indent, final newline."""
    return json.dumps(openapi_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m service.api.openapi_export PATH", file=sys.stderr)
        return 2
    path = Path(args[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_openapi(), encoding="utf-8", newline="\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
