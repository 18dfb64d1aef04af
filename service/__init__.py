"""rok: a run orchestration authority."""

__version__ = "0.1.0"
"""The one place the version is written (pyproject.toml, the API and /version read it)."""
