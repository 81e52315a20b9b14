"""JSON Schemas of the events, generated from the pydantic models into schemas/events/.

    python -m shared.events.schemas generate   # write schemas/events/*.json
    python -m shared.events.schemas check      # fail if a file is stale or a change breaks it

A schema may only grow: new optional properties. Removing or retyping a property, or adding
a required one, breaks consumers still reading the old form, so `incompatibilities` refuses it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.datasets.spec import DatasetSpec
from shared.events.catalog import EVENT_TYPES
from shared.events.envelope import Event, Payload
from shared.events.records import RawRecord

SCHEMA_ROOT = Path(__file__).resolve().parents[2] / "schemas"
SCHEMA_DIR = SCHEMA_ROOT / "events"
_ANNOTATIONS = {"title", "description", "examples", "default"}


def event_schema(payload: type[Payload]) -> dict[str, Any]:
    schema = Event[payload].model_json_schema()  # type: ignore[valid-type]
    schema["title"] = payload.event_type
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = (payload.__doc__ or "").strip()
    return schema


def schema_path(event_type: str, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{event_type}.json"


def document_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["title"] = title
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def all_schemas() -> dict[Path, dict[str, Any]]:
    """Every published schema by file: one per event type, plus the documents users write."""
    schemas = {schema_path(t): event_schema(p) for t, p in sorted(EVENT_TYPES.items())}
    schemas[SCHEMA_ROOT / "dataset-spec.json"] = document_schema(DatasetSpec, "DatasetSpec")
    schemas[SCHEMA_ROOT / "raw-record.json"] = document_schema(RawRecord, "RawRecord")
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def _without_annotations(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_annotations(v) for k, v in schema.items() if k not in _ANNOTATIONS}
    if isinstance(schema, list):
        return [_without_annotations(item) for item in schema]
    return schema


def _object_incompatibilities(old: dict[str, Any], new: dict[str, Any], where: str) -> list[str]:
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    problems = []
    for name, old_schema in old_props.items():
        if name not in new_props:
            problems.append(f"{where}.{name}: property removed")
        elif _without_annotations(old_schema) != _without_annotations(new_props[name]):
            problems.append(f"{where}.{name}: definition changed")
    for name in sorted(new_required - old_required):
        problems.append(f"{where}.{name}: became required")
    for name in sorted(old_required - new_required):
        problems.append(f"{where}.{name}: no longer required")
    if not old_props and _without_annotations(old) != _without_annotations(new):
        problems.append(f"{where}: definition changed")
    return problems


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in `new` would break a reader or writer of `old`; empty when compatible."""
    problems = _object_incompatibilities(old, new, "<event>")
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    for name, old_def in old_defs.items():
        if name not in new_defs:
            problems.append(f"$defs.{name}: removed")
        else:
            problems.extend(_object_incompatibilities(old_def, new_defs[name], f"$defs.{name}"))
    return problems


def check() -> list[str]:
    """Stale, missing or incompatible schema files, as readable problems."""
    problems = []
    for path, current in all_schemas().items():
        if not path.exists():
            problems.append(f"{path.name}: missing (run `make schemas`)")
            continue
        committed = json.loads(path.read_text())
        problems.extend(f"{path.name}: {p}" for p in incompatibilities(committed, current))
        if render(committed) != render(current):
            problems.append(f"{path.name}: out of date with the model (run `make schemas`)")
    return problems


def generate() -> list[Path]:
    """Writes every schema, refusing to overwrite one with an incompatible change."""
    written = []
    for path, current in all_schemas().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            problems = incompatibilities(json.loads(path.read_text()), current)
            if problems:
                raise SystemExit(f"{path.name}: incompatible change: " + "; ".join(problems))
        path.write_text(render(current))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.events.schemas")
    parser.add_argument("command", choices=["generate", "check"])
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path in generate():
            print(f"wrote {path}")
        return 0
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
