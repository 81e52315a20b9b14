"""`mlops reproduce MODEL@VERSION`: rebuild a registered version from the Kafka offsets it was
trained on, retrain it with its recorded parameters and seed, and compare.

The rebuilding is in shared.cli.rebuild (imported when the command runs); here are the
command and what it compares: spec fingerprint, rows, holdout rows, training-set hash, every
metric (exactly), and the registered artifact's outputs on the holdout rows (the probe set)
against the rebuilt model's.

skops artifacts are zip files that carry their write time and object ids, so two fits of the
same model never have the same bytes: the artifact is compared by its predictions (every
probability, bit for bit), not by its sha256 (which is still checked when it is loaded).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from shared.cli.common import CliError, ServiceClient, Unreachable, cli_settings, platform_settings
from shared.cli.replay import fast_consumer_config
from shared.datasets.registry import SpecRegistry, UnknownDataset
from shared.events.models import OffsetRange, TrainingLineage
from shared.kafka.config import client_config

out = Console()
err = Console(stderr=True)
VALIDATED, LABELS, FEATURES = "data.validated", "data.labels", "data.features"
_TARGET = re.compile(r"^(?P<name>[a-z][a-z0-9_-]{0,99})(@(?P<version>[1-9][0-9]*))?$")
IDENTICAL = "identical"


# -- what is compared (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One comparison: what the registered version recorded, what the reproduction gave."""

    name: str
    recorded: str
    reproduced: str
    same: bool
    difference: str = ""
    """How it differs, in a few words (empty when it does not)."""


def compare_value(name: str, recorded: Any, reproduced: Any) -> Check:
    same = recorded == reproduced
    return Check(name, str(recorded), str(reproduced), same, "" if same else name)


def compare_metrics(recorded: dict[str, float], reproduced: dict[str, float]) -> Check:
    """Exact equality of every metric; a difference names each metric and by how much."""
    parts = []
    for name in sorted(set(recorded) | set(reproduced)):
        was, now = recorded.get(name), reproduced.get(name)
        if was is None or now is None:
            parts.append(f"{name} {'missing' if now is None else 'new'}")
        elif not _same_number(was, now):
            parts.append(f"{name} {now - was:+.6g}")
    return Check(
        "metrics",
        _metrics_text(recorded),
        _metrics_text(reproduced),
        not parts,
        f"metrics ({', '.join(parts)})" if parts else "",
    )


def compare_predictions(recorded: np.ndarray, reproduced: np.ndarray) -> Check:
    """Both models' outputs on the probe rows, compared value for value."""
    rows = len(recorded)
    label = f"{rows} probe rows"
    if recorded.shape != reproduced.shape:
        return Check(
            "predictions", str(recorded.shape), str(reproduced.shape), False,
            f"predictions (shapes {recorded.shape} and {reproduced.shape})",
        )  # fmt: skip
    equal = _equal_elements(recorded, reproduced)
    differing = int((~equal.reshape(rows, -1).all(axis=1)).sum()) if rows else 0
    if differing == 0:
        return Check("predictions", label, f"{label}, all equal", True)
    gap = _max_gap(recorded, reproduced)
    where = f"{differing} of {rows} rows differ" + (f", max |diff| {gap:.3g}" if gap else "")
    return Check("predictions", label, where, False, f"predictions ({where})")


def compare_sources(records: int, mismatched: int) -> Check:
    """The feature events must be those of the data.validated records they claim to be of."""
    recorded = f"{records} records in the {VALIDATED} ranges"
    if not mismatched:
        return Check("feature sources", recorded, "every feature event matches its record", True)
    where = f"{mismatched} feature events name another record than their source message"
    return Check("feature sources", recorded, where, False, f"feature sources ({where})")


def verdict(checks: Iterable[Check]) -> str:
    """`identical`, or `differs: ` and what differs."""
    differences = [check.difference or check.name for check in checks if not check.same]
    return IDENTICAL if not differences else "differs: " + "; ".join(differences)


def parse_target(target: str, latest: bool) -> tuple[str, int | None]:
    """`loans@3` -> ("loans", 3); `loans` with --latest -> ("loans", None)."""
    match = _TARGET.match(target.strip())
    if match is None:
        raise typer.BadParameter(f"{target!r}: expected MODEL@VERSION, e.g. loans@3")
    name, version = match.group("name"), match.group("version")
    if version is not None and latest:
        raise typer.BadParameter(f"{target!r}: give a version or --latest, not both")
    if version is None and not latest:
        raise typer.BadParameter(f"{target!r}: name a version (MODEL@VERSION) or add --latest")
    return name, int(version) if version is not None else None


def lineage_of(document: Any) -> TrainingLineage:
    """The lineage in a document: a bare lineage, or a version/`mlops lineage` answer holding
    one under "lineage"."""
    if isinstance(document, dict) and isinstance(document.get("lineage"), dict):
        document = document["lineage"]
    try:
        return TrainingLineage.model_validate(document)
    except ValueError as error:
        raise CliError(f"not a training lineage: {str(error).splitlines()[0]}") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CliError(f"{path}: not a readable JSON file ({error})") from None


def namespace_of(ranges: list[OffsetRange]) -> str:
    """The namespace of the lineage's topics (`<namespace>.data.labels`)."""
    namespaces = set()
    for offsets in ranges:
        prefix, _, short = offsets.topic.partition(".")
        if short not in (VALIDATED, LABELS):
            raise CliError(
                f"the lineage names {offsets.topic!r}: only {VALIDATED} and {LABELS} ranges "
                "can be rebuilt"
            )
        namespaces.add(prefix)
    if len(namespaces) != 1:
        raise CliError(f"the lineage's ranges span namespaces {sorted(namespaces)}")
    return namespaces.pop()


def _same_number(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.6f}" for name, value in sorted(metrics.items()))


def _equal_elements(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return np.asarray((a == b) | (np.isnan(a) & np.isnan(b)))
    return np.asarray(a == b)


def _max_gap(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype.kind not in "fciu" or b.dtype.kind not in "fciu":
        return 0.0
    return float(np.nanmax(np.abs(a.astype(float) - b.astype(float))))


def report(title: str, checks: list[Check], notes: list[str]) -> str:
    table = Table("check", "registered", "reproduced", "", title=title)
    for check in checks:
        mark = "[green]same[/green]" if check.same else "[red]differs[/red]"
        table.add_row(check.name, check.recorded, check.reproduced, mark)
    out.print(table)
    for note in notes:
        out.print(note, highlight=False)
    line = verdict(checks)
    print(line)
    return line


def reproduce(
    target: Annotated[str, typer.Argument(help="MODEL@VERSION, or MODEL with --latest.")],
    latest: Annotated[bool, typer.Option("--latest", help="The model's newest version.")] = False,
    lineage_file: Annotated[
        Path | None,
        typer.Option(
            help="Rebuild from this lineage (JSON, e.g. `mlops lineage MODEL VERSION`, edited) "
            "instead of the registered one; the result is still compared with the version.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Rebuild a model version bit for bit from the Kafka offsets in its lineage: the
    training set, the model (recorded params and seed) and its metrics, then compare with the
    registered version. The last line is `identical` or `differs: <what>` (exit 1)."""
    name, number = parse_target(target, latest)
    registry = ServiceClient("registry", cli_settings())
    if number is None:
        number = int(registry.get(f"/models/{name}")["latest_version"])
    version = registry.get(f"/models/{name}/versions/{number}")
    lineage = lineage_of(read_json(lineage_file) if lineage_file else version["lineage"])
    platform = platform_settings()
    namespace = namespace_of(lineage.offsets)
    specs = SpecRegistry(
        client_config(platform, "mlops-cli-specs"), f"{namespace}.data.specs", "mlops-cli"
    )
    try:
        specs.refresh()
        versioned = specs.get(lineage.dataset, lineage.spec_version)
    except UnknownDataset as unknown:
        raise CliError(str(unknown)) from None
    except KafkaException as error:
        raise Unreachable(f"Kafka: {error.args[0]}") from None
    from shared.cli import rebuild  # pandas and scikit-learn: only when the command runs

    reader = rebuild.RangeReader(fast_consumer_config(platform, "mlops-reproduce"))
    started = time.monotonic()
    rebuilt = rebuild.rebuild_training_set(lineage, reader, specs, platform.max_payload_bytes)
    read_s = time.monotonic() - started
    settings = rebuild.TrainingSettings()
    reproduction = rebuild.retrain(rebuilt.raw, versioned, lineage, version, settings)
    registered = rebuild.registered_model(platform, version)
    checks = [
        compare_sources(rebuilt.validated_records, rebuilt.mismatched),
        *rebuild.checks_of(lineage, version, versioned, reproduction, registered),
    ]
    line = report(
        f"{name} v{number}: {rebuilt.feature_events} feature and {rebuilt.label_events} "
        f"label events rebuilt from Kafka in {read_s:.1f}s, retrained in "
        f"{time.monotonic() - started - read_s:.1f}s",
        checks,
        rebuild.environment_notes(lineage, rebuilt),
    )
    if line != IDENTICAL:
        raise typer.Exit(1)
