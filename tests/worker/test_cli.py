"""`rok worker --app module:object`: a handler dict or a WorkerPool factory."""

from __future__ import annotations

from collections.abc import Sequence

import click
import pytest

from service.worker.cli import AppError, WorkerOptions, load_app, worker_command
from service.worker.hooks import Domain
from service.worker.pool import WorkerPool

handlers = {"job": lambda ctx: "ok"}
not_an_app = 42


class Named(Domain):
    def __init__(self, name: str) -> None:
        self.name = name


def default_domains(policy_file: str | None) -> Sequence[Domain]:
    """Stands in for the reference domains the `rok` command composes."""
    return [Named("first"), Named(f"policies from {policy_file}")]


def factory(url: str, concurrency: int) -> WorkerPool:
    return WorkerPool(url, handlers, concurrency=concurrency, domains=[])


def wrong_factory(url: str, concurrency: int) -> str:
    return "not a pool"


def parse(*argv: str) -> WorkerOptions:
    return worker_command(default_domains).options(argv)


def test_a_handler_dict_runs_with_the_default_domains_of_the_command() -> None:
    args = parse("--app", f"{__name__}:handlers", "--url", "http://rok:9", "--concurrency", "3")
    pool = load_app(args)
    assert pool.url == "http://rok:9" and pool.concurrency == 3
    assert list(pool.handlers) == ["job"]
    assert [d.name for d in pool.domains] == ["first", "policies from None"]
    with_rules = load_app(parse("--app", f"{__name__}:handlers", "--policies", "rules.toml"))
    assert [d.name for d in with_rules.domains] == ["first", "policies from rules.toml"]
    assert load_app(parse("--app", f"{__name__}:handlers", "--no-domains")).domains == []


def test_a_factory_gets_the_url_and_the_concurrency() -> None:
    pool = load_app(parse("--app", f"{__name__}:factory", "--concurrency", "7"))
    assert pool.concurrency == 7 and pool.domains == []


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_colon", "expected module:object"),
        ("no.such.module:handlers", "cannot import"),
        (f"{__name__}:missing", "has no missing"),
        (f"{__name__}:not_an_app", "need a handler dict or a factory"),
        (f"{__name__}:wrong_factory", "not a WorkerPool"),
    ],
)
def test_a_bad_app_is_explained(app: str, message: str) -> None:
    with pytest.raises(AppError, match=message):
        load_app(parse("--app", app))


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(click.BadParameter, match="0 is not in the range"):
        parse("--app", "x:y", "--concurrency", "0")
