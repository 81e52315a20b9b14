"""The console's pages and the JSON endpoints its script polls.

    GET  /                                 the loop: services, topics, health, lag, rates, timeline
    GET  /api/loop                         its live figures (health, lag, end offsets)
    GET  /models, /models/{name}           models; one model's versions, chart, audit, forms
    POST /models/{name}/promote|rollback|approve
                                           forwarded to the registry with the session's key
    GET  /models/{name}/compare?a=&b=      two versions side by side
    GET  /models/{name}/versions/{v}       lineage graph, reproduce form and result
    POST /models/{name}/versions/{v}/reproduce
    GET  /api/reproductions/{id}           a reproduction's state (polled)
    GET  /monitoring, /monitoring/{model}  live performance, drift, detectors, policy
    GET  /api/monitoring/{model}/chart     the performance chart's figure (polled)
    GET  /data, /data/{dataset}            datasets, specs, validation stats, rejections
    GET  /traces, /traces/{trace_id}       recent traces; one trace's waterfall
    GET  /session; POST /session, /session/logout

Every POST carries the session's CSRF token (403 without it). Pages render whatever the
services answered and name the ones that did not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from services.console.adapters.jaeger import Jaeger
from services.console.adapters.kafka import KafkaAdmin, Offsets
from services.console.adapters.services import Answer, Services
from services.console.domain import charts, csrf, loop, timeline
from services.console.domain.lineage_graph import lineage_graph
from services.console.domain.traces import waterfall
from services.console.sessions import KeyStore
from services.console.settings import SERVICES
from shared.events.models import MODEL_NAME

HERE = Path(__file__).parent
PLOTLY_JS = Path(__import__("plotly").__file__).parent / "package_data" / "plotly.min.js"
NAV = (
    ("/", "loop", "The loop"),
    ("/models", "models", "Models"),
    ("/monitoring", "monitoring", "Monitoring"),
    ("/data", "data", "Data"),
    ("/traces", "traces", "Traces"),
    ("/session", "session", "Session"),
)
TIMELINE_MODELS = 10
TIMELINE_LIMIT = 40
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<circle cx="8" cy="8" r="7" fill="#1f77b4"/></svg>'
)
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)

ModelParam = Annotated[str, PathParam(pattern=MODEL_NAME)]
VersionParam = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


@dataclass
class ConsoleDeps:
    services: Services
    jaeger: Jaeger
    kafka: KafkaAdmin | None
    keys: KeyStore
    namespace: str
    jaeger_ui_url: str
    poll_interval_s: float
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
    )
    environment.filters["q"] = lambda value: quote(str(value), safe="")
    environment.filters["number"] = _number
    environment.filters["when"] = _when
    return Jinja2Templates(env=environment)


def _when(value: Any) -> str:
    """An ISO time or epoch seconds as UTC 'YYYY-MM-DD HH:MM:SS' (as given if unreadable)."""
    at = timeline.parse_time(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else str(value or "")


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value) if value is not None else "-"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def install(app: FastAPI, deps: ConsoleDeps) -> None:
    app.state.console = deps
    app.state.templates = templates()
    app.include_router(router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


router = APIRouter()


def _deps(request: Request) -> ConsoleDeps:
    deps: ConsoleDeps = request.app.state.console
    return deps


def render(
    request: Request,
    template: str,
    page: str,
    problems: list[str] | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    deps = _deps(request)
    session = request.session
    flash = session.pop("flash", None)
    body = {
        "page": page,
        "nav": NAV,
        "csrf_token": csrf.token_of(session),
        "signed_in": deps.keys.key(session) is not None,
        "flash": flash,
        "problems": sorted(set(problems or [])),
        "poll_ms": int(deps.poll_interval_s * 1000),
        "jaeger_ui_url": deps.jaeger_ui_url,
        **context,
    }
    response: HTMLResponse = request.app.state.templates.TemplateResponse(
        request, template, body, status_code=status_code
    )
    return response


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (anything else in it, or a value that is no list: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def mapping(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def problems_of(*answers: Answer, expected: tuple[int, ...] = (404,)) -> list[str]:
    """What to name on the page: each service that did not answer, or answered an error that
    is not an expected one (e.g. 404 for "no such model yet")."""
    found = []
    for answer in answers:
        if answer.unreachable:
            found.append(answer.detail())
        elif not answer.ok and answer.status not in expected:
            found.append(f"{answer.service}: {answer.detail()}")
    return found


async def require_csrf(request: Request) -> dict[str, Any]:
    form = dict(await request.form())
    if not csrf.valid(request.session, form.get(csrf.FIELD)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


# --- static -------------------------------------------------------------------------------


@router.get("/static/plotly.min.js", include_in_schema=False)
def plotly_js() -> FileResponse:
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers=_cached())


@router.get("/static/{name}", include_in_schema=False)
def static(name: Annotated[str, PathParam(pattern=r"^console\.(js|css)$")]) -> FileResponse:
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(HERE / "static" / name, media_type=media, headers=_cached())


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return Response(FAVICON, media_type="image/svg+xml", headers=_cached())


def _cached() -> dict[str, str]:
    return {"Cache-Control": "public, max-age=300"}


# --- the loop -----------------------------------------------------------------------------


def loop_figures(deps: ConsoleDeps) -> dict[str, Any]:
    ready = deps.services.ready(SERVICES)
    offsets = deps.kafka.offsets() if deps.kafka is not None else Offsets(error="kafka: off")
    health = {name: "up" if answer.ok else "down" for name, answer in ready.items()}
    reasons = {
        name: answer.detail() if answer.unreachable else json.dumps(answer.data)[:300]
        for name, answer in ready.items()
        if not answer.ok
    }
    return {
        "at": deps.clock().isoformat(),
        "health": health,
        "reasons": reasons,
        "lag": loop.lag_per_service(offsets.lag, deps.namespace),
        "end_offsets": offsets.end,
        "kafka_error": offsets.error,
    }


def gather_timeline(deps: ConsoleDeps) -> tuple[list[timeline.TimelineEvent], list[str]]:
    drift, models, serving = deps.services.gather(
        [
            lambda: deps.services.get("monitoring", "/drift"),
            lambda: deps.services.get("registry", "/models"),
            lambda: deps.services.get("serving", "/models"),
        ]
    )
    groups: list[list[timeline.TimelineEvent]] = []
    monitoring = drift.json_or({})
    groups.append(timeline.drift_events(dicts(monitoring.get("drifts"))))
    groups.append(timeline.decision_events(dicts(monitoring.get("decisions"))))
    recent = sorted(dicts(models.json_or([])), key=lambda m: str(m.get("created_at")), reverse=True)
    names = [str(model["name"]) for model in recent[:TIMELINE_MODELS]]
    calls: list[Callable[[], Answer]] = []
    for name in names:
        path = f"/models/{quote(name, safe='')}"
        calls.append(lambda p=path: deps.services.get("registry", f"{p}/versions"))
        calls.append(lambda p=path: deps.services.get("registry", f"{p}/audit"))
    answers = deps.services.gather(calls)
    for index, name in enumerate(names):
        groups.append(timeline.version_events(dicts(answers[2 * index].json_or([]))))
        groups.append(timeline.audit_events(name, dicts(answers[2 * index + 1].json_or([]))))
    for served in dicts(serving.json_or([])):
        champion = served.get("champion") or {}
        if champion.get("loaded_at"):
            deployment = {"deployed_at": champion["loaded_at"], "alias": "champion"}
            deployment["instance"] = "serving"
            groups.append(
                timeline.deployment_events(served["model"], champion["version"], [deployment])
            )
    return timeline.merge(groups, TIMELINE_LIMIT), problems_of(drift, models, serving)


@router.get("/", response_class=HTMLResponse)
def loop_page(request: Request) -> HTMLResponse:
    deps = _deps(request)
    figures = loop_figures(deps)
    events, problems = gather_timeline(deps)
    problems += [f"{name}: down ({why})" for name, why in figures["reasons"].items()]
    if figures["kafka_error"]:
        problems.append(figures["kafka_error"])
    return render(
        request,
        "loop.html",
        "loop",
        problems,
        figures=figures,
        services=loop.SERVICE_BOXES,
        topics=loop.TOPIC_BOXES,
        arrows=loop.arrows(),
        width=loop.WIDTH,
        height=loop.HEIGHT,
        events=events,
    )


@router.get("/api/loop")
def loop_json(request: Request) -> JSONResponse:
    return JSONResponse(loop_figures(_deps(request)))


@router.get("/api/timeline")
def timeline_json(request: Request) -> JSONResponse:
    events, problems = gather_timeline(_deps(request))
    return JSONResponse({"events": [e.as_json() for e in events], "problems": problems})


# --- models -------------------------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> HTMLResponse:
    deps = _deps(request)
    models, serving = deps.services.gather(
        [
            lambda: deps.services.get("registry", "/models"),
            lambda: deps.services.get("serving", "/models"),
        ]
    )
    served = {entry.get("model"): entry for entry in dicts(serving.json_or([]))}
    rows = []
    for model in sorted(dicts(models.json_or([])), key=lambda m: str(m.get("name"))):
        aliases = model.get("aliases") or {}
        rows.append(
            {
                **model,
                "champion": aliases.get("champion"),
                "challengers": sorted(
                    f"{alias} v{version}"
                    for alias, version in aliases.items()
                    if alias != "champion"
                ),
                "served": served.get(model.get("name")),
            }
        )
    return render(
        request,
        "models.html",
        "models",
        problems_of(models, serving),
        models=rows,
        registry_up=models.ok,
    )


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: ModelParam) -> HTMLResponse:
    deps = _deps(request)
    path = f"/models/{quote(name, safe='')}"
    model, versions, audit = deps.services.gather(
        [
            lambda: deps.services.get("registry", path),
            lambda: deps.services.get("registry", f"{path}/versions"),
            lambda: deps.services.get("registry", f"{path}/audit"),
        ]
    )
    version_rows = list(reversed(dicts(versions.json_or([]))))
    return render(
        request,
        "model.html",
        "model",
        problems_of(model, versions, audit),
        name=name,
        model=model.json_or({}) or None,
        missing=model.status == 404,
        versions=version_rows,
        audit=list(reversed(dicts(audit.json_or([])))),
        metric_chart=charts.metric_per_version(dicts(versions.json_or([]))),
    )


def _flash(request: Request, answer: Answer, done: str) -> None:
    if answer.ok:
        request.session["flash"] = {"outcome": "done", "text": done}
    else:
        request.session["flash"] = {"outcome": "refused", "text": answer.detail()}


def _chosen_version(request: Request, form: Any, action: str) -> int | None:
    """The form's `version`, or None with a refusal flashed."""
    try:
        return int(str(form.get("version", "")))
    except ValueError:
        request.session["flash"] = {"outcome": "refused", "text": f"choose a version to {action}"}
        return None


def _change_registry(
    request: Request, method: str, path: str, body: dict[str, Any], done: Callable[[Answer], str]
) -> Answer:
    """Sends a change to the registry with the session's key and flashes its outcome."""
    deps = _deps(request)
    answer = deps.services.call(
        method, "registry", path, json=body, api_key=deps.keys.key(request.session)
    )
    _flash(request, answer, done(answer))
    return answer


@router.post("/models/{name}/promote")
async def promote(request: Request, name: ModelParam) -> RedirectResponse:
    form = await require_csrf(request)
    back = f"/models/{quote(name, safe='')}"
    version = _chosen_version(request, form, "promote")
    if version is not None:
        alias = str(form.get("alias") or "champion")
        reason = str(form.get("reason") or "").strip() or "promoted from the console"
        _change_registry(
            request,
            "PUT",
            f"{back}/aliases/{quote(alias, safe='')}",
            {"version": version, "reason": reason},
            lambda _: f"v{version} is now {alias}",
        )
    return RedirectResponse(back, 303)


@router.post("/models/{name}/rollback")
async def rollback(request: Request, name: ModelParam) -> RedirectResponse:
    form = await require_csrf(request)
    back = f"/models/{quote(name, safe='')}"
    alias = str(form.get("alias") or "champion")
    reason = str(form.get("reason") or "").strip() or "rolled back from the console"

    def done(answer: Answer) -> str:
        data = answer.data if answer.ok and isinstance(answer.data, dict) else {}
        return f"{alias} rolled back to v{data.get('version')}"

    _change_registry(request, "POST", f"{back}/rollback", {"reason": reason, "alias": alias}, done)
    return RedirectResponse(back, 303)


@router.post("/models/{name}/approve")
async def approve(request: Request, name: ModelParam) -> RedirectResponse:
    """Approves the challenger waiting for approval (the registry's manual approval mode)."""
    form = await require_csrf(request)
    back = f"/models/{quote(name, safe='')}"
    version = _chosen_version(request, form, "approve")
    if version is not None:
        reason = str(form.get("reason") or "").strip() or None
        _change_registry(
            request,
            "POST",
            f"{back}/versions/{version}/approve",
            {"reason": reason} if reason else {},
            lambda _: f"v{version} approved: it is now champion",
        )
    return RedirectResponse(back, 303)


@router.get("/models/{name}/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    name: ModelParam,
    a: Annotated[int, Query(ge=1, le=2**31 - 1)],
    b: Annotated[int, Query(ge=1, le=2**31 - 1)],
) -> HTMLResponse:
    deps = _deps(request)
    path = f"/models/{quote(name, safe='')}"
    comparison, left, right = deps.services.gather(
        [
            lambda: deps.services.get("registry", f"{path}/compare", {"a": a, "b": b}),
            lambda: deps.services.get("registry", f"/lineage/{quote(name, safe='')}/{a}"),
            lambda: deps.services.get("registry", f"/lineage/{quote(name, safe='')}/{b}"),
        ]
    )
    return render(
        request,
        "compare.html",
        "compare",
        problems_of(comparison, left, right),
        name=name,
        a=a,
        b=b,
        comparison=comparison.json_or({}) or None,
        refusal=None if comparison.ok or comparison.unreachable else comparison.detail(),
        left=left.json_or({}),
        right=right.json_or({}),
    )


# --- a version ----------------------------------------------------------------------------


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(
    request: Request,
    name: ModelParam,
    version: VersionParam,
    reproduction: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")] = None,
) -> HTMLResponse:
    deps = _deps(request)
    calls = [
        lambda: deps.services.get("registry", f"/lineage/{quote(name, safe='')}/{version}"),
        lambda: deps.services.get("registry", f"/models/{quote(name, safe='')}/versions/{version}"),
    ]
    if reproduction:
        calls.append(lambda: deps.services.get("training", f"/reproductions/{reproduction}"))
    answers = deps.services.gather(calls)
    lineage, detail = answers[0], answers[1]
    result = answers[2] if reproduction else None
    document = lineage.json_or({}) or None
    graph = lineage_graph(document) if document else None
    trace_id = ((document or {}).get("training") or {}).get("trace_id")
    return render(
        request,
        "version.html",
        "version",
        problems_of(*answers),
        name=name,
        version=version,
        lineage=document,
        detail=detail.json_or({}) or None,
        missing=lineage.status == 404,
        graph=graph,
        trace_id=trace_id,
        reproduction=_reproduction_view(result) if result is not None else None,
    )


def _reproduction_view(answer: Answer) -> dict[str, Any]:
    if answer.ok and isinstance(answer.data, dict):
        return answer.data
    if answer.unreachable or answer.status in (404, 405):
        reason = "reproduction is unavailable: " + answer.detail()
        return {"status": "unavailable", "reason": reason, "checks": []}
    return {"status": "failed", "reason": answer.detail(), "checks": []}


@router.post("/models/{name}/versions/{version}/reproduce")
async def reproduce(request: Request, name: ModelParam, version: VersionParam) -> Response:
    await require_csrf(request)
    deps = _deps(request)
    back = f"/models/{quote(name, safe='')}/versions/{version}"
    key = deps.keys.key(request.session)
    if key is None:
        request.session["flash"] = {
            "outcome": "refused",
            "text": "reproducing needs the registry API key: enter it at /session",
        }
        return RedirectResponse(back, 303)
    answer = deps.services.call(
        "POST", "training", "/reproductions", json={"model": name, "version": version}, api_key=key
    )
    if answer.ok and isinstance(answer.data, dict) and answer.data.get("id"):
        query = urlencode({"reproduction": str(answer.data["id"])})
        return RedirectResponse(f"{back}?{query}#reproduction", 303)
    if answer.unreachable or (answer.status in (404, 405) and not _version_unknown(answer)):
        text = f"reproduction is unavailable ({answer.detail()})"
    else:
        text = answer.detail()
    request.session["flash"] = {"outcome": "refused", "text": text}
    return RedirectResponse(back, 303)


def _version_unknown(answer: Answer) -> bool:
    """A 404 of the reproductions endpoint itself (FastAPI's "Not Found") is no refusal of
    the version: the endpoint does not exist."""
    return answer.status == 404 and answer.detail() != "Not Found"


@router.get("/api/reproductions/{reproduction_id}")
def reproduction_json(
    request: Request,
    reproduction_id: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")],
) -> JSONResponse:
    answer = _deps(request).services.get("training", f"/reproductions/{reproduction_id}")
    return JSONResponse(_reproduction_view(answer))


# --- monitoring ---------------------------------------------------------------------------


@router.get("/monitoring", response_class=HTMLResponse)
def monitoring_page(request: Request) -> HTMLResponse:
    deps = _deps(request)
    performance, drift = deps.services.gather(
        [
            lambda: deps.services.get("monitoring", "/performance"),
            lambda: deps.services.get("monitoring", "/drift"),
        ]
    )
    perf = performance.json_or({})
    state = drift.json_or({})
    models: dict[str, dict[str, Any]] = {}
    for row in dicts(perf.get("models")):
        models.setdefault(str(row.get("model_name")), {"versions": []})["versions"].append(row)
    for envelope in dicts(state.get("drifts")):
        model = str((envelope.get("data") or {}).get("model_name"))
        entry = models.setdefault(model, {"versions": []})
        entry["drifts"] = entry.get("drifts", 0) + 1
    return render(
        request,
        "monitoring.html",
        "monitoring",
        problems_of(performance, drift),
        models=dict(sorted(models.items())),
        breakers=mapping(state.get("breakers")),
        join=mapping(perf.get("join")),
    )


def monitoring_state(deps: ConsoleDeps, model: str) -> dict[str, Any]:
    quoted = quote(model, safe="")
    history, drift, audit, performance = deps.services.gather(
        [
            lambda: deps.services.get("monitoring", f"/performance/{quoted}/history"),
            lambda: deps.services.get("monitoring", "/drift"),
            lambda: deps.services.get("registry", f"/models/{quoted}/audit"),
            lambda: deps.services.get("monitoring", "/performance"),
        ]
    )
    perf = performance.json_or({})
    if history.ok:
        rows = dicts(history.json_or({}).get("points"))
    else:
        rows = [r for r in dicts(perf.get("history")) if r.get("model_name") == model]
    state = drift.json_or({})
    drifts = [
        d for d in dicts(state.get("drifts")) if (d.get("data") or {}).get("model_name") == model
    ]
    drift_times = [
        t
        for d in drifts
        if (t := timeline.parse_time((d.get("data") or {}).get("detected_at"))) is not None
    ]
    deployments = [
        t
        for entry in dicts(audit.json_or([]))
        if entry.get("action") in timeline.AUDIT_TYPES
        and timeline.AUDIT_TYPES[entry["action"]] in ("ModelPromoted", "ModelRolledBack")
        and entry.get("alias") == "champion"
        and (t := timeline.parse_time(entry.get("at"))) is not None
    ]
    return {
        "chart": charts.performance_chart(rows, drift_times, deployments),
        "drifts": drifts,
        "state": state,
        "performance": [r for r in dicts(perf.get("models")) if r.get("model_name") == model],
        # A monitoring without the history endpoint (404): its /performance rows instead.
        "problems": problems_of(drift, audit, performance, history),
    }


@router.get("/monitoring/{model}", response_class=HTMLResponse)
def monitoring_model_page(request: Request, model: ModelParam) -> HTMLResponse:
    deps = _deps(request)
    found = monitoring_state(deps, model)
    state = found["state"]
    references = mapping(mapping(state.get("training_reference")).get(model))
    reference_charts = {
        version: charts.reference_chart(features)
        for version, features in sorted(references.items(), key=lambda kv: int(kv[0]))
    }
    return render(
        request,
        "monitoring_model.html",
        "monitoring-model",
        found["problems"],
        model=model,
        performance_chart=found["chart"],
        drifts=found["drifts"],
        performance=found["performance"],
        detectors=[d for d in dicts(state.get("detectors")) if d.get("model_name") == model],
        decisions=[d for d in dicts(state.get("decisions")) if d.get("model_name") == model],
        breaker=mapping(state.get("breakers")).get(model),
        policy=mapping(state.get("policy")),
        references=references,
        reference_charts=reference_charts,
    )


@router.get("/api/monitoring/{model}/chart")
def monitoring_chart_json(request: Request, model: ModelParam) -> JSONResponse:
    return JSONResponse(monitoring_state(_deps(request), model)["chart"])


# --- data ---------------------------------------------------------------------------------


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request) -> HTMLResponse:
    deps = _deps(request)
    datasets, stats = deps.services.gather(
        [
            lambda: deps.services.get("ingestion", "/datasets"),
            lambda: deps.services.get("validation", "/stats"),
        ]
    )
    return render(
        request,
        "data.html",
        "data",
        problems_of(datasets, stats),
        datasets=dicts(datasets.json_or({}).get("datasets")),
        stats=stats.json_or({}),
    )


@router.get("/data/{dataset}", response_class=HTMLResponse)
def dataset_page(
    request: Request,
    dataset: Annotated[str, PathParam(min_length=1, max_length=200)],
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    a: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    b: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    entity: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
) -> HTMLResponse:
    deps = _deps(request)
    path = f"/datasets/{quote(dataset, safe='')}"
    spec_path = f"{path}/versions/{version}" if version else path
    calls: list[Callable[[], Answer]] = [
        lambda: deps.services.get("ingestion", spec_path),
        lambda: deps.services.get("validation", f"/stats/{quote(dataset, safe='')}"),
        lambda: deps.services.get(
            "validation", f"/rejections/{quote(dataset, safe='')}", {"limit": 200}
        ),
        lambda: deps.services.get("feature_store", "/training-sets/coverage"),
    ]
    if a and b:
        calls.append(lambda: deps.services.get("ingestion", f"{path}/versions/{a}"))
        calls.append(lambda: deps.services.get("ingestion", f"{path}/versions/{b}"))
    if entity:
        calls.append(
            lambda: deps.services.get(
                "feature_store", f"/features/{quote(dataset, safe='')}/{quote(entity, safe='')}"
            )
        )
    answers = deps.services.gather(calls)
    spec, stats, rejections, coverage = answers[:4]
    diff = None
    if a and b:
        diff = spec_diff(answers[4].json_or({}), answers[5].json_or({}))
    features = answers[-1] if entity else None
    offsets = deps.kafka.offsets() if deps.kafka is not None else Offsets()
    freshness = _freshness(dicts(coverage.json_or({}).get("coverage")), offsets, deps.namespace)
    rejected = dicts(rejections.json_or({}).get("rejections"))
    return render(
        request,
        "dataset.html",
        "dataset",
        problems_of(*answers),
        dataset=dataset,
        spec=spec.json_or({}) or None,
        spec_missing=spec.status == 404,
        stats=stats.json_or({}) or None,
        rejections=rejected[:50],
        rejections_chart=charts.rejections_chart(rejected),
        freshness=freshness,
        diff=diff,
        a=a,
        b=b,
        entity=entity,
        features=features.json_or({}) or None if features is not None else None,
        features_refusal=(features.detail() if features is not None and not features.ok else None),
    )


def spec_diff(left: Mapping[str, Any], right: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The fields of two spec versions that differ, as (path, a, b) rows."""
    rows: list[dict[str, Any]] = []

    def walk(prefix: str, x: Any, y: Any) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(f"{prefix}.{key}" if prefix else str(key), x.get(key), y.get(key))
        elif (
            isinstance(x, list)
            and isinstance(y, list)
            and all(isinstance(item, dict) and "name" in item for item in [*x, *y])
        ):
            walk(prefix, {i["name"]: i for i in x}, {i["name"]: i for i in y})
        elif x != y:
            rows.append({"path": prefix, "a": json.dumps(x), "b": json.dumps(y)})

    walk("", left.get("spec") or left, right.get("spec") or right)
    return rows


def _freshness(
    coverage: list[Mapping[str, Any]], offsets: Offsets, namespace: str
) -> list[dict[str, Any]]:
    """How far the offline store is written per topic partition, next to the topic's end."""
    rows = []
    for item in coverage:
        topic = str(item.get("topic"))
        end = offsets.partitions.get(topic, {}).get(int(item.get("partition") or 0))
        covered = item.get("offset")
        behind = end - covered if isinstance(end, int) and isinstance(covered, int) else None
        rows.append({**item, "end": end, "behind": behind})
    return rows


# --- traces -------------------------------------------------------------------------------


@router.get("/traces", response_class=HTMLResponse)
def traces_page(
    request: Request,
    service: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{0,100}$")] = None,
    model: Annotated[str | None, Query(pattern=r"^(|[a-z][a-z0-9_-]{0,99})$")] = None,
) -> HTMLResponse:
    service, model = service or None, model or None  # the form's empty fields: any
    deps = _deps(request)
    names = deps.jaeger.service_names()
    available = sorted(str(name) for name in names.json_or({}).get("data") or [])
    chosen = service or ("training" if "training" in available else None)
    if chosen is None and available:
        chosen = available[0]
    # A model's traces: the spans naming it (mlops.model) may be any service's, so every
    # service is asked unless one was chosen.
    asked = ([service] if service else available) if model else ([chosen] if chosen else [])
    tags = json.dumps({"mlops.model": model}) if model else None
    answers = [names]
    answers += deps.services.gather(
        [lambda name=name: deps.jaeger.traces(name, limit=30, tags=tags) for name in asked]
    )
    rows: dict[str, dict[str, Any]] = {}
    for found in answers[1:]:
        for trace in dicts(found.json_or({}).get("data")):
            summary = _trace_summary(trace)
            rows[str(summary["id"])] = summary
    if model and not service:
        chosen = None
    return render(
        request,
        "traces.html",
        "traces",
        problems_of(*answers),
        services=available,
        chosen=chosen,
        model=model,
        traces=sorted(rows.values(), key=lambda r: r["start"], reverse=True),
    )


def _trace_summary(trace: Mapping[str, Any]) -> dict[str, Any]:
    spans = trace.get("spans") or []
    processes = trace.get("processes") or {}
    starts = [s.get("startTime", 0) for s in spans] or [0]
    ends = [s.get("startTime", 0) + s.get("duration", 0) for s in spans] or [0]
    root = min(spans, key=lambda s: s.get("startTime", 0)) if spans else {}
    return {
        "id": trace.get("traceID"),
        "root": root.get("operationName", "?"),
        "spans": len(spans),
        "services": sorted(
            {str((processes.get(s.get("processID")) or {}).get("serviceName")) for s in spans}
        ),
        "start": datetime.fromtimestamp(min(starts) / 1e6, UTC).isoformat(),
        "duration_ms": (max(ends) - min(starts)) / 1000,
    }


@router.get("/traces/{trace_id}", response_class=HTMLResponse)
def trace_page(
    request: Request, trace_id: Annotated[str, PathParam(pattern=r"^[0-9a-fA-F]{1,32}$")]
) -> HTMLResponse:
    deps = _deps(request)
    answer = deps.jaeger.trace(trace_id)
    traces = dicts(answer.json_or({}).get("data"))
    rows = waterfall(traces[0]) if traces else None
    return render(
        request,
        "trace.html",
        "trace",
        problems_of(answer),
        trace_id=trace_id,
        waterfall=rows,
        missing=answer.status == 404 or (answer.ok and not traces),
    )


# --- session ------------------------------------------------------------------------------


@router.get("/session", response_class=HTMLResponse)
def session_page(request: Request) -> HTMLResponse:
    return render(request, "session.html", "session")


@router.post("/session")
async def sign_in(request: Request) -> RedirectResponse:
    form = await require_csrf(request)
    deps = _deps(request)
    key = str(form.get("api_key") or "").strip()
    if not key:
        request.session["flash"] = {"outcome": "refused", "text": "enter an API key"}
    else:
        deps.keys.remember(request.session, key)
        request.session["flash"] = {
            "outcome": "done",
            "text": "API key kept for this session; the registry checks it on each change",
        }
    return RedirectResponse("/session", 303)


@router.post("/session/logout")
async def sign_out(request: Request, csrf_token: Annotated[str, Form()] = "") -> RedirectResponse:
    if not csrf.valid(request.session, csrf_token):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    _deps(request).keys.forget(request.session)
    request.session["flash"] = {"outcome": "done", "text": "signed out: the key is forgotten"}
    return RedirectResponse("/session", 303)
