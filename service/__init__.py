"""rok: a run orchestration authority.

`__version__` is the one place the version is written: pyproject.toml reads it
at build time (hatchling's dynamic version) and the service reports it.
"""

__version__ = "0.1.0"
