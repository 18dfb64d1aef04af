"""Moved to tests.support.invariants (tests outside tests/kernel use it).

Kept only so tests/e2e/harness.py keeps importing; remove once it imports
from tests.support.invariants.
"""

from tests.support.invariants import assert_run_valid

__all__ = ["assert_run_valid"]
