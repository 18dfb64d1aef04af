"""`Prefer: return=minimal` (RFC 7240, section 4.2): a move answers the run's state alone.

The whole run (history, contract, acks, reconciliation) grows with the run and
costs three more reads inside the move's transaction; a worker needs the phase,
the lease and the verdict. People get the whole run by default; a client that
asks for less gets RunStateOut and the `Preference-Applied` header saying so.

Parsed by hand because it is a dozen lines: a preference is `token [= value]`
with optional `; parameters`, several per header or over several headers;
names are case-insensitive, values may be quoted, and a preference the server
does not know (or a header it cannot parse) is ignored, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable

RETURN_MINIMAL = "return=minimal"
PREFERENCE_APPLIED = "Preference-Applied"


def wants_minimal(headers: Iterable[str]) -> bool:
    """Whether the Prefer header(s) ask for `return=minimal` (the first `return` wins)."""
    for header in headers:
        for preference in header.split(","):
            name, _, value = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() == "return":
                return value.strip().strip('"').lower() == "minimal"
    return False
