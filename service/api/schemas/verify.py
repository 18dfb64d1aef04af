"""The answer of GET /runs/{run_id}/verify: whether the run's stored history is as sealed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ChainBreakOut(BaseModel):
    kind: Literal["contract", "transition", "ack", "unsealed", "missing"] = Field(
        description="`contract`: the run's declaration or contract changed (seq 0; once the "
        "run has entries such an edit shows as its first entry, whose seal covers it); "
        "`transition` / `ack`: that entry changed or moved; `unsealed`: an entry (or the "
        "run, seq 0) was never sealed, e.g. written before sealing existed; `missing`: an "
        "entry the chain has was deleted."
    )
    seq: int = Field(description="The entry's place in the run's chain (chain_seq); 0: the run.")


class VerifyOut(BaseModel):
    intact: bool = Field(
        description="Every transition and ack recomputes to its seal, in an unbroken chain "
        "from the run's declaration and contract."
    )
    checked: int = Field(description="How many entries were recomputed before the verdict.")
    first_broken: ChainBreakOut | None = Field(
        description="Where the chain first fails to hold; null when it is intact."
    )
