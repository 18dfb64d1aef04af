"""Request and response models: these classes are the OpenAPI contract.

Requests (`requests`) forbid unknown fields (a typo must not be silently
ignored by a governance service) and bound every number and string; what they
share, the check that a value is storable, is in `base`. Responses
(`responses`) are the shapes the presenters build.
"""

from __future__ import annotations

from service.api.schemas.base import StrictModel, check_storable
from service.api.schemas.events import EventBodyOut, EventOut, EventPageOut
from service.api.schemas.problems import FieldError, Problem, ValidationProblem
from service.api.schemas.requests import (
    AckBatchIn,
    AckIn,
    AuthorizeIn,
    CancelIn,
    ClaimIn,
    CreateRunIn,
    DecisionIn,
    EmptyIn,
    ExecutionCompleteIn,
    ExpectationIn,
    FailIn,
    FinalizeIn,
    GovernanceCheckIn,
    HeartbeatIn,
    RetryIn,
    UngovernedOutcomeIn,
)
from service.api.schemas.responses import (
    AckBatchOut,
    AckOut,
    ClaimOut,
    ExpectationOut,
    GovernanceCheckOut,
    GovernanceOut,
    HealthOut,
    HistoryEntryOut,
    LeaseGrantOut,
    LeaseOut,
    ReconciliationOut,
    RunAnswer,
    RunOut,
    RunPageOut,
    RunStateOut,
    RunSummaryOut,
)

__all__ = [
    "AckBatchIn",
    "AckBatchOut",
    "AckIn",
    "AckOut",
    "AuthorizeIn",
    "CancelIn",
    "ClaimIn",
    "ClaimOut",
    "CreateRunIn",
    "DecisionIn",
    "EmptyIn",
    "EventBodyOut",
    "EventOut",
    "EventPageOut",
    "ExecutionCompleteIn",
    "ExpectationIn",
    "ExpectationOut",
    "FailIn",
    "FieldError",
    "FinalizeIn",
    "GovernanceCheckIn",
    "GovernanceCheckOut",
    "GovernanceOut",
    "HealthOut",
    "HeartbeatIn",
    "HistoryEntryOut",
    "LeaseGrantOut",
    "LeaseOut",
    "Problem",
    "ReconciliationOut",
    "RetryIn",
    "RunAnswer",
    "RunOut",
    "RunPageOut",
    "RunStateOut",
    "RunSummaryOut",
    "StrictModel",
    "UngovernedOutcomeIn",
    "ValidationProblem",
    "check_storable",
]
