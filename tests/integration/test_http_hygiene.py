"""Issue 12's HTTP defects, against the seven real services (one platform for the module):
each test failed on the code before the fix.

- a 50 MB /predict body got a 50 MB 422 and +200 MB of serving memory: now 413, small;
- the registry validated a change's body before its API key: now 401/403 first;
- registry reads answered 500 to integers beyond 64 bits: now 422;
- ingestion answered 500 to a lone surrogate: now 422, nothing published;
- ingestion ignored the content type: now 415, on every JSON endpoint of every service;
- unclear reasons (an empty body, 1e400, an integer of 5000 digits): now said plainly.

Then schemathesis against every service's own OpenAPI document (/openapi.json), on the same
platform, the registry with an API key sent on every request. Each operation gets requests that
fit its schema and requests that do not (schemathesis' positive and negative modes), half of
them on the names that exist (KNOWN_NAMES), seeded (Hypothesis derandomized) and bounded
(EXAMPLES each), and every answer must hold two invariants: no 5xx (schemathesis'
not_a_server_error), and no answer larger than the service's request limit (an error never
grows with its input). Nothing is excluded: the operations that could start work (POST /train,
/training-sets, registry changes) only ever see generated names, which no dataset or model
has, so they answer 404 before anything starts; that is part of what is checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import schemathesis
from confluent_kafka.admin import AdminClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation

from shared.settings import PlatformSettings
from tests.integration.platform import KEYED, Platform, running_platform

MIB = 1024 * 1024
JSON = {"content-type": "application/json"}
SMALL_ANSWER = 2048

# Every JSON endpoint with a body it would take: (service, method, path, body).
JSON_ENDPOINTS = [
    ("ingestion", "POST", "/datasets/loans/records", {"records": [{"applicant_id": "a"}]}),
    ("ingestion", "POST", "/datasets/loans/labels", {"labels": [{"record_id": "r", "label": 1}]}),
    ("serving", "POST", "/predict", {"model": "loans", "entities": ["a"]}),
    ("feature_store", "POST", "/features/loans/batch", {"entities": ["a"]}),
    ("feature_store", "POST", "/training-sets", {"dataset": "a"}),
    (
        "feature_store",
        "POST",
        "/training-sets/rebuild",
        {
            "dataset": "a",
            "offsets": [
                {"topic": "x.data.labels", "partition": 0, "first_offset": 0, "last_offset": 0}
            ],
        },
    ),
    ("training", "POST", "/train", {"model_name": "m", "dataset": "nope", "reason": "r"}),
    ("training", "POST", "/reproductions", {"model": "a", "version": 1}),
    ("registry", "PUT", "/models/loans/aliases/champion", {"version": 1, "reason": "r"}),
    ("registry", "POST", "/models/loans/rollback", {"reason": "r"}),
    ("registry", "PUT", "/models/loans/tags/team", {"value": "r"}),
]


@pytest.fixture(scope="module")
def platform(
    admin: AdminClient, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    logs: Path = tmp_path_factory.mktemp("http-hygiene")
    with running_platform(admin, settings, logs, "hyg") as running:
        running.register_model()
        yield running


def rss_bytes(platform: Platform, name: str) -> int:
    status = Path(f"/proc/{platform.services[name].process.pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
    return int(kib) * 1024


def test_a_50_mb_predict_body_is_413_with_a_small_answer_and_serving_stays_alive(
    platform: Platform,
) -> None:
    before = rss_bytes(platform, "serving")
    records = [{"x": "y" * 1000}] * (50 * 1024)
    body = json.dumps({"model": "loans", "records": records}).encode()
    assert len(body) > 50 * 1000 * 1000
    answer = httpx.post(
        f"{platform.url('serving')}/predict", content=body, headers=JSON, timeout=60
    )
    assert answer.status_code == 413, answer.text[:300]
    assert len(answer.content) < SMALL_ANSWER
    assert answer.json()["reason"] == "too_large"
    assert "MLOPS_SERVING_MAX_BODY_BYTES" in answer.json()["detail"]
    assert platform.services["serving"].is_live()
    assert rss_bytes(platform, "serving") - before < 30 * MIB


def test_a_streamed_body_without_a_length_is_413_as_well(platform: Platform) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "loans", "records": ['
        for _ in range(40 * 1024):
            yield b'{"x": "' + b"y" * 1000 + b'"},'

    answer = httpx.post(
        f"{platform.url('serving')}/predict", content=chunks(), headers=JSON, timeout=60
    )
    assert answer.status_code == 413
    assert platform.services["serving"].is_live()


def test_a_validation_error_does_not_echo_the_input(platform: Platform) -> None:
    body = {"model": "loans", "records": [{"x": [1] * 100_000}], "extra": "z" * 100_000}
    answer = httpx.post(f"{platform.url('serving')}/predict", json=body, timeout=30)
    assert answer.status_code == 422
    assert len(answer.content) < 4 * SMALL_ANSWER
    assert "zzzz" not in answer.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/models/loans/aliases/champion", b'{"version": "not a number"}'),
        ("PUT", "/models/loans/aliases/champion", b"{broken"),
        ("POST", "/models/loans/rollback", b'{"unexpected": 1}'),
        ("POST", "/models/loans/versions/1/approve", b"[]"),
        ("PUT", "/models/loans/tags/team", b'{"value": 7}'),
    ],
)
def test_registry_changes_check_the_api_key_before_the_body(
    platform: Platform, method: str, path: str, body: bytes
) -> None:
    url = f"{platform.url('registry')}{path}"
    missing = httpx.request(method, url, content=body, headers=JSON)
    assert missing.status_code == 401, missing.text
    assert "X-API-Key" in missing.json()["detail"]
    wrong = httpx.request(method, url, content=body, headers={**JSON, "X-API-Key": "guess"})
    assert wrong.status_code == 403, wrong.text
    keyed = httpx.request(method, url, content=body, headers={**JSON, **KEYED})
    assert keyed.status_code in (400, 404, 422), keyed.text


@pytest.mark.parametrize(
    "path",
    [
        f"/lineage/loans/{2**70}",
        f"/models/loans/audit?after={2**70}",
        f"/models/loans/compare?a=1&b={2**70}",
        f"/models/loans/compare?a={2**70}&b={2**70}",
        f"/models/loans/versions/{2**63}",
        f"/models/loans/versions/{2**31}/lineage",
    ],
)
def test_registry_reads_with_integers_beyond_their_columns_are_422_not_500(
    platform: Platform, path: str
) -> None:
    answer = httpx.get(f"{platform.url('registry')}{path}")
    assert answer.status_code in (404, 422), answer.text


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"records": [{"applicant_id": "a", "amount": "\\ud800"}]}', "records[0].amount"),
        (b'{"records": [{"applicant_id": "\\udfff"}]}', "records[0].applicant_id"),
        (b'{"records": [{"applicant_id": "a\\u0000b"}]}', "records[0].applicant_id"),
        (b'{"records": [{"\\ud800": 1, "applicant_id": "a"}]}', "records[0] (a key)"),
    ],
)
def test_ingestion_refuses_a_lone_surrogate_or_nul_with_422_and_publishes_nothing(
    platform: Platform, body: bytes, where: str
) -> None:
    before = platform.messages_in("data.raw")
    answer = httpx.post(
        f"{platform.url('ingestion')}/datasets/loans/records", content=body, headers=JSON
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["where"] == f"body.{where}"
    assert "lone surrogate" in answer.json()["detail"] or "NUL" in answer.json()["detail"]
    assert platform.messages_in("data.raw") == before


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("training", "/runs/%00"),
        ("feature_store", "/features/loans/a%00"),
        ("feature_store", "/features/%00/a"),
        ("ingestion", "/datasets/%00"),
        ("validation", "/stats/%00"),
        ("registry", "/models/%00"),
    ],
)
def test_a_nul_in_a_path_is_422_not_500(platform: Platform, service: str, path: str) -> None:
    answer = httpx.get(f"{platform.url(service)}{path}")
    assert answer.status_code == 422, answer.text
    assert platform.services[service].is_live()


def test_a_label_with_a_lone_surrogate_is_422(platform: Platform) -> None:
    body = b'{"labels": [{"record_id": "\\ud800", "label": 1}]}'
    url = f"{platform.url('ingestion')}/datasets/loans/labels"
    answer = httpx.post(url, content=body, headers=JSON)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(("service", "method", "path", "body"), JSON_ENDPOINTS)
def test_a_lone_surrogate_in_any_json_body_is_422_on_every_service(
    platform: Platform, service: str, method: str, path: str, body: dict[str, object]
) -> None:
    spoiled = json.dumps(body).replace('"r"', '"\\udc80"').replace('"a"', '"\\udc80"')
    assert "\\udc80" in spoiled
    answer = httpx.request(
        method, f"{platform.url(service)}{path}", content=spoiled, headers={**JSON, **KEYED}
    )
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(("service", "method", "path", "body"), JSON_ENDPOINTS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_wrong_content_type_is_415_on_every_json_endpoint(
    platform: Platform,
    service: str,
    method: str,
    path: str,
    body: dict[str, object],
    content_type: str | None,
) -> None:
    headers = {**KEYED, **({"content-type": content_type} if content_type else {})}
    answer = httpx.request(
        method, f"{platform.url(service)}{path}", content=json.dumps(body), headers=headers
    )
    assert answer.status_code == 415, answer.text
    assert answer.json()["reason"] == "unsupported_media_type"
    assert "application/json" in answer.json()["accepted"]


def test_spec_registration_still_takes_yaml_and_files_still_take_csv(platform: Platform) -> None:
    url = platform.url("ingestion")
    spec = httpx.get(f"{url}/datasets/loans", timeout=30).json()["spec"]
    yaml_text = json.dumps(spec)  # JSON is YAML
    for content_type in ("application/yaml", "text/yaml", "application/json"):
        answer = httpx.post(
            f"{url}/datasets", content=yaml_text, headers={"content-type": content_type}, timeout=30
        )
        assert answer.status_code in (200, 201), (content_type, answer.text)
    refused = httpx.post(f"{url}/datasets", content=yaml_text, headers={"content-type": "text/csv"})
    assert refused.status_code == 415
    csv = httpx.post(
        f"{url}/datasets/loans/files", content=b"x", headers={"content-type": "image/png"}
    )
    assert csv.status_code == 415


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "the body is empty"),
        (b'{"records": [{"applicant_id": }]}', 400, "a value is missing"),
        (b'{"records": [{"applicant_id": "a", "amount": 1e400}]}', 422, "out of float range"),
        (
            b'{"records": [{"applicant_id": "a", "amount": ' + b"9" * 5000 + b"}]}",
            422,
            "an integer with 5000 digits, more than 4300",
        ),
    ],
)
def test_ingestion_says_plainly_what_is_wrong_with_a_body(
    platform: Platform, body: bytes, status: int, says: str
) -> None:
    url = f"{platform.url('ingestion')}/datasets/loans/records"
    answer = httpx.post(url, content=body, headers=JSON)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    assert "set_int_max_str_digits" not in answer.text and "Infinity" not in answer.text


# --- schemathesis: every operation of every service's OpenAPI document ---------------------

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

    @hypothesis_settings(
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
