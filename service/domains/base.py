"""The domain interface, under the name code written before it moved still imports.

`Domain` and its wrappers are the worker's hook interface and live in
`service.worker.hooks`, so that the worker needs no implementation of them;
new code imports them from `service.worker`. What the reference domains share
beyond the interface is in `service.domains.evidence`.
"""

from __future__ import annotations

from service.worker import Domain, Muted, Wrapped, muted_by_input

__all__ = ["Domain", "Muted", "Wrapped", "muted_by_input"]
