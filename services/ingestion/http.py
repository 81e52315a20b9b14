"""Ingestion's HTTP API. Handlers only read the request, call the use case and shape the answer;
refusals (domain/errors.py) become their status with {"detail", "reason", ...}.

    POST /datasets                           register a spec (JSON, or YAML by content type)
    GET  /datasets                           every dataset with its latest version
    GET  /datasets/{name}                    the latest version of a spec
    GET  /datasets/{name}/versions/{version} one version
    POST /datasets/{name}/records            {"records": [{column: value}, ...]}      -> data.raw
    POST /datasets/{name}/files              a CSV or Parquet file, of any size        -> data.raw
    POST /datasets/{name}/labels             {"labels": [{"record_id", "label"}, ...]} -> data.labels
"""

from __future__ import annotations

import logging
import math
import tempfile
from typing import IO, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from services.ingestion import metrics
from services.ingestion.adapters.files import open_table
from services.ingestion.domain.batches import parse_json, parse_label_batch, parse_record_batch
from services.ingestion.domain.errors import EmptyBatch, NotABatch, Refusal
from services.ingestion.domain.files import CSV_MEDIA_TYPES, PARQUET_MEDIA_TYPES, detect_format
from services.ingestion.domain.ingestion import FileAccepted, Ingestion
from services.ingestion.domain.specs import YAML_MEDIA_TYPES, media_type, parse_spec
from services.ingestion.settings import IngestionSettings
from shared.datasets.spec import DatasetSpec, VersionedSpec
from shared.http_limits import BodyLimit

log = logging.getLogger(__name__)
SPOOL_BUFFER = 1024 * 1024
FILES_PATH = "/datasets/{name}/files"


def _described(versioned: VersionedSpec, with_spec: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "name": versioned.spec.name,
        "version": versioned.version,
        "fingerprint": versioned.fingerprint,
    }
    if with_spec:
        answer["spec"] = versioned.spec.model_dump(mode="json")
    return answer


def body_limit(settings: IngestionSettings) -> BodyLimit:
    """JSON bodies (records, labels, specs) are bounded; files are streamed, of any size."""
    return BodyLimit.of(
        settings,
        unbounded_paths=[FILES_PATH],
        hint="send smaller batches, or send a file to /datasets/<name>/files",
        count=lambda reason: metrics.REFUSALS.labels(reason).inc(),
    )


_RECORDS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["records"],
                    "additionalProperties": False,
                    "properties": {
                        "records": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": ["string", "number", "integer", "boolean", "null"]
                                },
                            },
                        }
                    },
                },
                "example": {
                    "records": [
                        {"applicant_id": "applicant-7", "applied_at": "2024-01-01T00:00:00Z"}
                    ]
                },
            }
        },
    }
}
_LABELS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["labels"],
                    "properties": {
                        "labels": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["record_id", "label"],
                                "properties": {
                                    "record_id": {"type": "string"},
                                    "label": {"type": ["string", "number", "integer", "boolean"]},
                                    "labelled_at": {"type": "string", "format": "date-time"},
                                    "entity": {"type": "string"},
                                },
                            },
                        }
                    },
                }
            }
        },
    }
}
_FILE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            **{media: {"schema": {"type": "string"}} for media in sorted(CSV_MEDIA_TYPES)},
            **{
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in sorted(PARQUET_MEDIA_TYPES | {"application/octet-stream"})
            },
        },
    }
}


def build_router(ingestion: Ingestion, settings: IngestionSettings) -> APIRouter:
    router = APIRouter(tags=["ingestion"])

    @router.post(
        "/datasets",
        summary="Register a dataset spec (201 new version, 200 already registered)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": DatasetSpec.model_json_schema()},
                    **{media: {"schema": {"type": "string"}} for media in sorted(YAML_MEDIA_TYPES)},
                },
            }
        },
    )
    async def register_spec(request: Request) -> JSONResponse:
        body = await request.body()
        spec = parse_spec(body, request.headers.get("content-type"))
        outcome = await run_in_threadpool(ingestion.register_spec, spec)
        metrics.SPECS_REGISTERED.labels("created" if outcome.created else "unchanged").inc()
        return JSONResponse(
            _described(outcome.versioned, with_spec=False), 201 if outcome.created else 200
        )

    @router.get("/datasets", summary="Every dataset with its latest version")
    def list_datasets() -> dict[str, Any]:
        return {"datasets": [_described(v, with_spec=False) for v in ingestion.datasets()]}

    @router.get("/datasets/{name}", summary="The latest version of a dataset spec")
    def get_dataset(name: str) -> dict[str, Any]:
        return _described(ingestion.dataset(name), with_spec=True)

    @router.get("/datasets/{name}/versions/{version}", summary="One version of a dataset spec")
    def get_dataset_version(name: str, version: int) -> dict[str, Any]:
        return _described(ingestion.dataset_version(name, version), with_spec=True)

    @router.post(
        "/datasets/{name}/records",
        status_code=202,
        summary="Ingest a batch of records (202 once Kafka confirmed every one)",
        openapi_extra=_RECORDS_BODY,
    )
    async def ingest_records(name: str, request: Request) -> JSONResponse:
        rows = parse_record_batch(parse_json(await request.body()))
        accepted = await run_in_threadpool(ingestion.ingest_records, name, rows)
        metrics.RECORDS_ACCEPTED.labels(name, "batch").inc(len(accepted.ids))
        return JSONResponse(
            {
                "accepted": len(accepted.ids),
                "ids": accepted.ids,
                "spec_version": accepted.spec_version,
            },
            202,
        )

    @router.post(
        FILES_PATH,
        status_code=202,
        summary="Ingest a CSV or Parquet file, chunk by chunk (any size)",
        openapi_extra=_FILE_BODY,
    )
    async def ingest_file(
        name: str,
        request: Request,
        format: str | None = Query(None, description="csv or parquet, when the type is unclear"),
    ) -> JSONResponse:
        # An unknown dataset (or Kafka down) is refused before a large upload is read.
        await run_in_threadpool(ingestion.dataset, name)
        content_type = request.headers.get("content-type")
        if media_type(content_type) == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=20)
            try:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise NotABatch(
                        'the multipart body has no file in a field named "file" '
                        f"(fields: {', '.join(form.keys()) or 'none'})"
                    )
                outcome = await _ingest_upload(
                    name, upload.file, format, upload.filename, upload.content_type
                )
            finally:
                await form.close()
        else:
            with tempfile.TemporaryFile(dir=settings.spool_dir) as spool:
                async for part in request.stream():
                    spool.write(part)
                outcome = await _ingest_upload(name, spool, format, None, content_type)
        return JSONResponse(
            {
                "accepted": outcome.accepted,
                "chunks": outcome.chunks,
                "first_id": outcome.first_id,
                "last_id": outcome.last_id,
                "spec_version": outcome.spec_version,
            },
            202,
        )

    async def _ingest_upload(
        name: str,
        file: IO[bytes],
        requested: str | None,
        filename: str | None,
        content_type: str | None,
    ) -> FileAccepted:
        file.seek(0)
        head = file.read(8)
        if not head:
            raise EmptyBatch("the uploaded file is empty: nothing to ingest")
        file_format = detect_format(
            requested=requested, filename=filename, content_type=content_type, head=head
        )
        file.seek(0)
        table = open_table(file, file_format, settings.file_chunk_rows)
        try:
            outcome = await run_in_threadpool(ingestion.ingest_file, name, table)
        except Refusal as refusal:
            metrics.RECORDS_ACCEPTED.labels(name, "file").inc(refusal.extra.get("accepted", 0))
            raise
        metrics.RECORDS_ACCEPTED.labels(name, "file").inc(outcome.accepted)
        return outcome

    @router.post(
        "/datasets/{name}/labels",
        status_code=202,
        summary="Record labels (ground truth) for ingested records",
        openapi_extra=_LABELS_BODY,
    )
    async def record_labels(name: str, request: Request) -> JSONResponse:
        labels = parse_label_batch(parse_json(await request.body()))
        ids = await run_in_threadpool(ingestion.record_labels, name, labels)
        metrics.LABELS_ACCEPTED.labels(name).inc(len(ids))
        return JSONResponse({"accepted": len(ids), "ids": ids}, 202)

    return router


def install_refusal_handler(app: FastAPI) -> None:
    """Every Refusal becomes its status and body, counted by reason."""

    async def refused(_: Request, refusal: Exception) -> JSONResponse:
        assert isinstance(refusal, Refusal)
        metrics.REFUSALS.labels(refusal.reason).inc()
        if refusal.status >= 500:
            log.warning("refused (%s): %s", refusal.reason, refusal.message)
        retry_after = refusal.extra.get("retry_after_s")
        headers = None if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
        return JSONResponse(refusal.body(), refusal.status, headers=headers)

    app.add_exception_handler(Refusal, refused)
