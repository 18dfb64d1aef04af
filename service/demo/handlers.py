"""Example handlers: small "agents" that call a fake model and fake tools.

Each shows one path through rok: a clean run, a budget blown mid-run, a
timeout, a crash, a policy denial. They are ordinary callables taking the
run's context; nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from service.worker.context import RunContext

MODEL_PRICE = 0.02  # dollars per call of the fake model
EXPENSIVE_MODEL_PRICE = 0.40


class ToolError(RuntimeError):
    """A fake tool failing the way real ones do."""


async def fake_model(ctx: RunContext, prompt: str, price: float = MODEL_PRICE) -> str:
    """A language model call: some latency, a price charged to the run."""
    ctx.step("model.complete", prompt=prompt[:80], price=price)
    await asyncio.sleep(random.uniform(0.02, 0.06))
    ctx.charge(price)
    return f"[model answer to: {prompt[:40]}]"


async def fake_search(ctx: RunContext, query: str) -> list[str]:
    ctx.step("tool.search", query=query)
    await asyncio.sleep(random.uniform(0.01, 0.03))
    return [f"https://example.org/{query.replace(' ', '-')}/{n}" for n in range(3)]


async def research_agent(ctx: RunContext) -> dict[str, Any]:
    """Plans, searches, answers: three steps, a few cents, success."""
    question = _question(ctx, "What changed in the Q3 report?")
    plan = await fake_model(ctx, f"plan how to answer: {question}")
    sources = await fake_search(ctx, question)
    ctx.check()  # a well-behaved agent checks between steps: cancelled runs stop here
    answer = await fake_model(ctx, f"answer {question} from {len(sources)} sources using {plan}")
    return {"answer": answer, "sources": sources, "cost": round(ctx.cost, 2)}


async def spendthrift_agent(ctx: RunContext) -> str:
    """Keeps asking the expensive model to think harder; the policy's max_cost stops it."""
    question = _question(ctx, "Prove the Riemann hypothesis")
    thought = question
    for depth in range(100):
        thought = await fake_model(ctx, f"think harder (depth {depth}): {thought}", price=0.40)
    return thought  # never reached: the third call crosses max_cost


def slow_agent(ctx: RunContext) -> str:
    """A sync handler waiting on a tool that never answers: the run timeout abandons it."""
    ctx.step("tool.wait_for_approval", approver="finance")
    while True:
        time.sleep(0.1)
        ctx.check()  # once abandoned, this raises and the thread ends too


async def flaky_agent(ctx: RunContext) -> str:
    """Its weather tool fails; the exception fails the run with a traceback summary."""
    await fake_model(ctx, "which city should I check the weather of?")
    ctx.step("tool.weather", city="Lyon")
    raise ToolError("weather API answered 503 Service Unavailable")


async def forbidden_agent(ctx: RunContext) -> str:
    """Never runs: its kill switch is on in policies.toml."""
    raise AssertionError("a denied run was executed")


HANDLERS = {
    "research_agent": research_agent,
    "spendthrift_agent": spendthrift_agent,
    "slow_agent": slow_agent,
    "flaky_agent": flaky_agent,
    "forbidden_agent": forbidden_agent,
}


def _question(ctx: RunContext, default: str) -> str:
    data = ctx.input
    if isinstance(data, dict) and isinstance(data.get("question"), str):
        return str(data["question"])
    return default
