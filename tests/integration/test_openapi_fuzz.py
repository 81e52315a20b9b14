"""Schemathesis against every service's own OpenAPI document (/openapi.json), on the seven real
services started once for the module, the registry with an API key sent on every request.

Each operation gets requests that fit its schema and requests that do not (schemathesis'
positive and negative modes), half of them on the names that exist (KNOWN_NAMES), seeded
(Hypothesis derandomized) and bounded (EXAMPLES each), and
every answer must hold two invariants: no 5xx (schemathesis' not_a_server_error), and no
answer larger than the service's request limit (an error never grows with its input).

Nothing is excluded: the operations that could start work (POST /train, /training-sets,
registry changes) only ever see generated names, which no dataset or model has, so they answer
404 before anything starts; that is part of what is checked. A registered model "loans" and the
shipped dataset specs give the reads rows to find.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from confluent_kafka.admin import AdminClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation

from shared.settings import PlatformSettings
from tests.integration.platform import KEYED, Platform, running_platform

MIB = 1024 * 1024
EXAMPLES = 40
# Path parameters that name something the platform has, so that half the cases get past the
# 404 of an unknown dataset or model into the code that reads it.
KNOWN_NAMES = {"name": "loans", "dataset": "loans"}
ERROR_ANSWER_LIMIT = 64 * 1024
# Each service's request limit (MLOPS_<NAME>_MAX_BODY_BYTES defaults): no answer is larger.
# The one 5xx that is a contract: /live and /ready answer 503 while the service is not alive or
# not ready (here serving's /ready: the registered version's artifact does not exist, so its
# champion is refused), which is how a supervisor or a load balancer is told.
HEALTH_CONTRACT = {"GET /live": {503}, "GET /ready": {503}}
REQUEST_LIMITS = {
    "ingestion": 16 * MIB,
    "validation": MIB,
    "feature_store": 8 * MIB,
    "training": MIB,
    "registry": MIB,
    "serving": 16 * MIB,
    "monitoring": MIB,
}


@pytest.fixture(scope="module")
def platform(
    admin: AdminClient, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    logs: Path = tmp_path_factory.mktemp("openapi-fuzz")
    with running_platform(admin, settings, logs, "fuzz") as running:
        running.register_model()
        yield running


def operations(platform: Platform, service: str) -> list[APIOperation]:
    schema = schemathesis.openapi.from_url(f"{platform.url(service)}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert found, f"{service} documents no operation"
    return found


def problems_of(operation: APIOperation, base_url: str, limit: int) -> list[str]:
    """What breaks the invariants on this operation's generated requests (empty: nothing)."""
    problems: list[str] = []
    known = {
        name: KNOWN_NAMES[name]
        for name in re.findall(r"{(\w+)}", operation.path)
        if name in KNOWN_NAMES
    }
    cases = st.one_of(
        *(
            operation.as_strategy(generation_mode=mode, path_parameters=fixed)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            for fixed in ({}, known)
        )
    )

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases)
    def each(case: schemathesis.Case) -> None:
        try:
            response = case.call(base_url=base_url, headers=KEYED, timeout=60)
        except requests.RequestException as error:
            problems.append(f"{error!r}\n  {case.as_curl_command(base_url=base_url)}")
            return
        if response.status_code in HEALTH_CONTRACT.get(operation.label, ()):
            return
        size = len(response.content)
        bound = ERROR_ANSWER_LIMIT if 400 <= response.status_code < 500 else limit
        if response.status_code >= 500 or size > bound:
            problems.append(
                f"{response.status_code}, {size} bytes: {response.text[:300]}\n"
                f"  {case.as_curl_command(base_url=base_url)}"
            )
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except BaseExceptionGroup as failures:  # schemathesis' FailureGroup
            problems.append(f"not_a_server_error: {str(failures)[:300]}")

    each()
    return problems


@pytest.mark.parametrize("service", sorted(REQUEST_LIMITS))
def test_no_generated_request_gets_a_5xx_or_an_oversized_answer(
    platform: Platform, service: str
) -> None:
    base_url = platform.url(service)
    found = {
        operation.label: problems_of(operation, base_url, REQUEST_LIMITS[service])
        for operation in operations(platform, service)
    }
    broken = {label: problems for label, problems in found.items() if problems}
    report = "\n".join(f"{label}:\n  " + "\n  ".join(p[:3]) for label, p in broken.items())
    assert not broken, f"{service}: {len(broken)} operations broke an invariant\n{report}"
    assert platform.services[service].is_live()
