"""The registry's HTTP API. Reads are open; changes need an API key in X-API-Key (missing: 401,
unknown: 403, checked before the body is read), whose owner is recorded as the decision maker.

    GET    /models                                   every model, its aliases and version count
    GET    /models/{name}                            one model, with its tags
    GET    /models/{name}/versions                   its versions, oldest first
    GET    /models/{name}/versions/{version}         one version, in full
    GET    /models/{name}/versions/{version}/lineage what it was trained on, and how
    GET    /lineage/{name}/{version}                 all of it: data, training, trigger (the
                                                     DriftDetected itself), decisions, deployments,
                                                     each with its trace id
    GET    /models/{name}/aliases/{alias}            the version holding an alias (404: none)
    GET    /models/{name}/compare?a=&b=              metrics side by side, params/lineage diffs
    GET    /models/{name}/audit                      every transition, oldest first
    PUT    /models/{name}/aliases/{alias}            {"version", "reason"}  -> ModelPromoted
    POST   /models/{name}/rollback                   {"reason", "alias"?}   -> ModelRolledBack
    POST   /models/{name}/versions/{version}/approve {"reason"?}            -> ModelPromoted
    PUT    /models/{name}[/versions/{version}]/tags/{key}   {"value"}
    DELETE /models/{name}[/versions/{version}]/tags/{key}

Lifecycle events are confirmed by Kafka before the answer; when Kafka does not confirm, the
answer is 503 and the change is not kept.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from services.registry.domain.errors import Conflict, NotFound, PublishFailed, RegistryError
from services.registry.domain.events import CHAMPION
from services.registry.lifecycle import Publish, Registry
from services.registry.queries import RegistryQueries
from services.registry.views import (
    AliasView,
    AuditView,
    Change,
    Comparison,
    Lineage,
    LineageDocument,
    ModelDetail,
    ModelSummary,
    VersionDetail,
    VersionSummary,
)
from shared.events.models import MODEL_NAME

ALIAS = r"^[a-z][a-z0-9_-]{0,49}$"
TAG_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$"
MAX_ID = 2**31 - 1  # versions and audit ids are SQL INTEGER columns
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STATUS = {NotFound: 404, Conflict: 409, PublishFailed: 503}


@dataclass(frozen=True)
class RegistryApi:
    """What the routes need; bootstrap puts one on app.state (see `install`)."""

    registry: Registry
    publish: Publish
    api_keys: Mapping[str, SecretStr] = field(default_factory=dict)

    @property
    def queries(self) -> RegistryQueries:
        return RegistryQueries(self.registry)


def install(app: FastAPI, api: RegistryApi) -> None:
    app.state.registry_api = api
    app.include_router(router)
    app.add_middleware(KeyBeforeBody, api=api)


def _api(request: Request) -> RegistryApi:
    api: RegistryApi = request.app.state.registry_api
    return api


_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key from MLOPS_REGISTRY_API_KEYS."
)


def key_owner(key: str | None, api_keys: Mapping[str, SecretStr]) -> str:
    """The owner of the API key sent; 401 without a key, 403 for a key nobody owns."""
    if not key:
        raise HTTPException(
            401,
            "changes need an API key in the X-API-Key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    owner = None
    for name, secret in api_keys.items():
        if hmac.compare_digest(key.encode(), secret.get_secret_value().encode()):
            owner = name
    if owner is None:
        raise HTTPException(403, "this API key is not allowed to change the registry")
    return owner


def _owner(
    api: Annotated[RegistryApi, Depends(_api)], key: Annotated[str | None, Security(_key_header)]
) -> str:
    """The owner of the API key sent, who becomes `decided_by` and the audit trail's actor."""
    return key_owner(key, api.api_keys)


class KeyBeforeBody:
    """Refuses a change without a valid API key before anything reads its body: an unknown
    caller learns neither the body's schema nor its limits (401/403, never 413/415/422)."""

    def __init__(self, app: ASGIApp, api: RegistryApi) -> None:
        self.app, self.api = app, api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in CHANGES:
            try:
                key_owner(Headers(scope=scope).get("x-api-key"), self.api.api_keys)
            except HTTPException as refused:
                answer = JSONResponse(
                    {"detail": refused.detail}, refused.status_code, headers=refused.headers
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


ApiDep = Annotated[RegistryApi, Depends(_api)]
OwnerDep = Annotated[str, Depends(_owner)]
NameParam = Annotated[str, Path(pattern=MODEL_NAME, description="The model's name.")]
VersionParam = Annotated[int, Path(ge=1, le=MAX_ID, description="A version number.")]
AliasParam = Annotated[str, Path(pattern=ALIAS, description="champion, challenger, ...")]
TagParam = Annotated[str, Path(pattern=TAG_KEY)]


@contextmanager
def refusals() -> Iterator[None]:
    """The registry's refusals as HTTP answers: 404, 409, 503."""
    try:
        yield
    except RegistryError as error:
        status = next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 400)
        raise HTTPException(status, str(error)) from None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AliasRequest(_Request):
    version: int = Field(ge=1, le=MAX_ID)
    reason: str = Field(min_length=1, max_length=2000, description="Why; kept in the audit trail.")


class RollbackRequest(_Request):
    reason: str = Field(min_length=1, max_length=2000)
    alias: str = Field(CHAMPION, pattern=ALIAS)


class ApproveRequest(_Request):
    reason: str | None = Field(None, min_length=1, max_length=2000)


class TagRequest(_Request):
    value: str = Field(max_length=5000)


router = APIRouter(tags=["registry"])


@router.get("/models")
def list_models(api: ApiDep) -> list[ModelSummary]:
    return api.queries.models()


@router.get("/models/{name}")
def get_model(api: ApiDep, name: NameParam) -> ModelDetail:
    with refusals():
        return api.queries.model(name)


@router.get("/models/{name}/versions")
def list_versions(api: ApiDep, name: NameParam) -> list[VersionSummary]:
    with refusals():
        return api.queries.versions(name)


@router.get("/models/{name}/versions/{version}")
def get_version(api: ApiDep, name: NameParam, version: VersionParam) -> VersionDetail:
    with refusals():
        return api.queries.version(name, version)


@router.get("/models/{name}/versions/{version}/lineage")
def get_lineage(api: ApiDep, name: NameParam, version: VersionParam) -> Lineage:
    with refusals():
        return api.queries.lineage(name, version)


@router.get("/lineage/{name}/{version}")
def get_lineage_document(api: ApiDep, name: NameParam, version: VersionParam) -> LineageDocument:
    """One version's lineage in one document: dataset, spec, offset ranges, data quality,
    feature definitions, the training run, the triggering event, every registry decision and
    every deployment, each with the W3C trace id of the message or request that carried it."""
    with refusals():
        return api.queries.lineage_document(name, version)


@router.get("/models/{name}/aliases/{alias}")
def get_alias(api: ApiDep, name: NameParam, alias: AliasParam) -> AliasView:
    """The version holding the alias; serving asks for "champion" when it starts."""
    with refusals():
        return api.queries.alias(name, alias)


@router.get("/models/{name}/compare")
def compare_versions(
    api: ApiDep,
    name: NameParam,
    a: Annotated[int, Query(ge=1, le=MAX_ID, description="One version.")],
    b: Annotated[int, Query(ge=1, le=MAX_ID, description="The other, usually the newer.")],
) -> Comparison:
    with refusals():
        return api.queries.compare(name, a, b)


@router.get("/models/{name}/audit")
def get_audit(
    api: ApiDep,
    name: NameParam,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Only entries after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AuditView]:
    with refusals():
        return api.queries.audit(name, after, limit)


@router.put("/models/{name}/aliases/{alias}")
def set_alias(
    api: ApiDep, owner: OwnerDep, name: NameParam, alias: AliasParam, body: AliasRequest
) -> Change:
    """Points the alias at a version and publishes ModelPromoted with that alias."""
    with refusals():
        change = api.registry.set_alias(name, alias, body.version, body.reason, owner, api.publish)
    return Change(**change)


@router.post("/models/{name}/rollback")
def rollback(api: ApiDep, owner: OwnerDep, name: NameParam, body: RollbackRequest) -> Change:
    """Returns the alias to its previous holder per the audit trail; publishes ModelRolledBack."""
    with refusals():
        change = api.registry.rollback(name, body.alias, body.reason, owner, api.publish)
    return Change(**change)


@router.post("/models/{name}/versions/{version}/approve")
def approve(
    api: ApiDep,
    owner: OwnerDep,
    name: NameParam,
    version: VersionParam,
    body: Annotated[ApproveRequest | None, Body()] = None,
) -> Change:
    """Promotes the challenger waiting for approval to champion; publishes ModelPromoted."""
    reason = body.reason if body is not None else None
    with refusals():
        change = api.registry.approve(name, version, reason, owner, api.publish)
    return Change(**change)


@router.put("/models/{name}/tags/{key}")
def set_model_tag(
    api: ApiDep, owner: OwnerDep, name: NameParam, key: TagParam, body: TagRequest
) -> Change:
    with refusals():
        return Change(**api.registry.set_tag(name, None, key, body.value, owner))


@router.delete("/models/{name}/tags/{key}")
def delete_model_tag(api: ApiDep, owner: OwnerDep, name: NameParam, key: TagParam) -> Change:
    with refusals():
        return Change(**api.registry.delete_tag(name, None, key, owner))


@router.put("/models/{name}/versions/{version}/tags/{key}")
def set_version_tag(
    api: ApiDep,
    owner: OwnerDep,
    name: NameParam,
    version: VersionParam,
    key: TagParam,
    body: TagRequest,
) -> Change:
    with refusals():
        return Change(**api.registry.set_tag(name, version, key, body.value, owner))


@router.delete("/models/{name}/versions/{version}/tags/{key}")
def delete_version_tag(
    api: ApiDep, owner: OwnerDep, name: NameParam, version: VersionParam, key: TagParam
) -> Change:
    with refusals():
        return Change(**api.registry.delete_tag(name, version, key, owner))
