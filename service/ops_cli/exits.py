"""Exit codes of `rok runs …` that say what went wrong, and the error that carries one.

A script can branch on them without reading the message: 1 the service (or
the run) said no, 2 the command line is wrong, 3 no such run, 4 the key is
missing, unknown or lacks the scope, 5 the service cannot be reached or
failed to answer.
"""

from __future__ import annotations

from typing import IO, Any

import click

OK = 0
REFUSED = 1
USAGE = 2
NOT_FOUND = 3
UNAUTHORIZED = 4
UNREACHABLE = 5


def exit_code_for(status: int) -> int:
    """The exit code of an HTTP error answer's status."""
    if status == 404:
        return NOT_FOUND
    if status in (401, 403):
        return UNAUTHORIZED
    if status in (400, 422):
        return USAGE  # the request the command built from its arguments was refused as malformed
    if status >= 500:
        return UNREACHABLE
    return REFUSED  # 409 phase or lease conflict, 429 and the rest: an answer that says no


class CommandFailed(click.ClickException):
    """A command that ends with `rok: <message>` on stderr and `exit_code`."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click declares exit_code a class variable; each error here carries its own
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"rok: {self.format_message()}", err=True, file=file)
