"""What every request body shares: unknown fields refused, and only storable values.

A value is storable when both databases keep it exactly as sent (check_storable).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")
Pair = tuple[str, str]

MAX_JSON_DEPTH = 32
_INT64 = 2**63


class StrictModel(BaseModel):
    """A request body: unknown fields, coerced types and unstorable text are refused."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # Every value must come back exactly as sent, on both databases:
        # see check_storable for what cannot.
        check_storable(data, "body")
        return data


def check_storable(value: Any, where: str, depth: int = 0) -> None:
    """Refuse JSON values that a database would alter, reject or choke on.

    NaN/Infinity are not JSON (SQLite would store null, PostgreSQL refuses
    them), integers past 64 bits come back as floats, NUL characters are
    refused by PostgreSQL text, lone surrogates cannot be encoded, and very
    deep nesting overflows the encoders. Each would either change a stored run
    or fail after it was committed.
    """
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{where} holds {value}, which is not a JSON number")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"{where} holds an integer outside the signed 64-bit range")
    elif isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), f"{where} key")
            check_storable(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{where}[{index}]", depth + 1)


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise ValueError(f"{where} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} contains an unpaired surrogate") from None
