"""Contract fuzzing: schemathesis sends generated requests, valid and invalid, to
every operation of the OpenAPI contract, against the live app (tests.contract.conftest).

Three passes over every operation:

1. with an admin key: no 5xx, and every answer has a documented status, content
   type, headers and body schema;
2. with no key: every protected operation answers 401 (with a Bearer
   challenge), the public ones 200;
3. with a key of tenant B, the run ids aimed at runs of tenant A: 403, 404 or
   422 (a refusal that does not depend on the run), never a 2xx, a 409 (which
   would tell the run exists) or a 5xx; no answer to B names a run of A.

A generated request may also drop a header on purpose (schemathesis's
"missing parameter" cases): without the key, 401 is the right answer in
every pass. The schema fuzzed is the one the app serves, which
tests/api/test_openapi.py holds equal to the committed openapi/openapi.json.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.auth import is_public
from service.api.openapi_export import openapi_schema
from tests.contract.conftest import AnyCase, Live

schema = schemathesis.openapi.from_dict(openapi_schema())

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
FUZZING = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def sent_key(response: Response) -> bool:
    return bool("Authorization" in response.request.headers)


def wrong_method(case: AnyCase) -> bool:
    """A case that sends a method the path does not have (answered 401, or 405 if public)."""
    return bool(case.method.upper() != case.operation.method.upper())


def test_the_fuzzed_schema_is_the_one_the_live_app_serves(live: Live) -> None:
    assert live.client.get("/openapi.json").json() == openapi_schema()


@schema.parametrize()
@FUZZING
def test_an_admin_key_gets_only_documented_answers(case: AnyCase, live: Live) -> None:
    live.aim(case, every=2)
    response = live.call(case, live.admin, "admin key")
    if sent_key(response):
        assert response.status_code != 401, response.text
    case.validate_response(response, checks=CONFORMANCE)


@schema.parametrize()
@FUZZING
def test_no_key_gets_401_on_every_protected_operation(case: AnyCase, live: Live) -> None:
    live.aim(case, every=2)
    response = live.call(case, {}, "no key")
    protected = bool(case.operation.definition.raw.get("security"))
    assert protected == (not is_public(case.operation.path)), "security declared as served"
    if protected:
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"][0].startswith("Bearer")
    else:
        assert response.status_code == (405 if wrong_method(case) else 200), response.text
    case.validate_response(response, checks=CONFORMANCE)


@schema.parametrize()
@FUZZING
def test_another_tenants_key_never_reaches_its_runs(case: AnyCase, live: Live) -> None:
    aimed = live.aim(case, every=1)
    response = live.call(case, live.tenant_b, "tenant B key")
    if not sent_key(response):
        assert response.status_code == 401, response.text
    elif aimed is not None and not wrong_method(case):
        assert response.status_code in (403, 404, 422), (aimed, response.status_code, response.text)
    if response.status_code < 300:
        for run_id in live.tenant_a_runs:
            assert run_id not in response.text, f"tenant B was shown run {run_id} of tenant A"
    case.validate_response(response, checks=CONFORMANCE)
