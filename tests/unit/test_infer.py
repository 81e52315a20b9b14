import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_diabetes

from services.ingestion.domain.specs import parse_spec
from shared.datasets.infer import (
    WIDEN,
    InferenceError,
    infer_spec,
    main,
    read_sample,
    spec_to_yaml,
    unseen_category_notes,
)
from shared.datasets.sources import agrawal_records, breast_cancer_records
from shared.datasets.spec import DatasetSpec, FeatureSpec, FeatureType, shipped_specs

START = datetime(2024, 1, 1, tzinfo=UTC)


def a_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer": ["c1", "c2", "c3", "c4"],
            "at": ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-02", "2024-01-03"],
            "amount": [1.5, 20.25, None, 3.0],
            "items": [1, 4, 2, 9],
            "returns": [0.0, None, 2.0, 1.0],
            "member": [True, False, True, True],
            "channel": ["web", "shop", "web", None],
            "seen": pd.to_datetime(["2024-01-01", "2024-01-02", None, "2024-01-03"]),
            "churned": [0, 1, 0, 1],
        }
    )


def assert_widened(feature: FeatureSpec, low: float, high: float) -> None:
    """An expected range (never a hard one) around the sample's [low, high], reaching past each
    end by WIDEN of the spread (rounded outward a little: to a tenth of that reach, or to a
    whole number for integers), and not below 0 for a non-negative sample."""
    assert (feature.min, feature.max) == (None, None), f"{feature.name}: no hard bound invented"
    assert feature.expected_min is not None and feature.expected_max is not None
    reach = WIDEN * (high - low)
    slack = 1.0 if feature.type == FeatureType.INTEGER else 0.1 * reach
    floor = low - reach
    if low >= 0:
        floor = max(floor, 0.0)
    assert floor - slack - 1e-9 <= feature.expected_min <= floor + 1e-9, (feature.name, feature)
    ceiling = high + reach
    assert ceiling - 1e-9 <= feature.expected_max <= ceiling + slack + 1e-9, (feature.name, feature)
    if feature.type == FeatureType.INTEGER:
        assert float(feature.expected_min).is_integer() and float(feature.expected_max).is_integer()


def infer(frame: pd.DataFrame | None = None, **kwargs: object) -> DatasetSpec:
    arguments: dict = {"name": "shop", "entity_key": "customer", "event_time": "at", **kwargs}
    return infer_spec(a_frame() if frame is None else frame, **arguments)


def test_types_ranges_categories_and_nulls_come_from_the_sample() -> None:
    spec = infer(label="churned")
    amount, items, returns = spec.feature("amount"), spec.feature("items"), spec.feature("returns")
    assert (amount.type, amount.nullable) == (FeatureType.NUMERIC, True)
    assert (items.type, items.nullable) == (FeatureType.INTEGER, False)
    assert_widened(amount, 1.5, 20.25)
    assert_widened(items, 1, 9)
    assert returns.type == FeatureType.INTEGER, "whole floats with nulls are an upcast int column"
    assert spec.feature("member").type == FeatureType.BOOLEAN
    channel = spec.feature("channel")
    assert (channel.type, channel.categories, channel.nullable) == (
        FeatureType.CATEGORICAL,
        ["shop", "web"],
        True,
    )
    assert spec.feature("seen").type == FeatureType.TIMESTAMP
    assert [f.name for f in spec.features] == [
        "amount",
        "items",
        "returns",
        "member",
        "channel",
        "seen",
    ], "key, time and label columns are not features"
    assert spec.label is not None
    assert (spec.label.type, spec.label.task) == (FeatureType.INTEGER, "classification")


def test_text_columns_numeric_codes_and_iso_times_and_booleans() -> None:
    frame = pd.DataFrame(
        {
            "k": ["a", "b", "c"],
            "t": ["1", "2", "3"],
            "code": ["10", "2", "1"],
            "when": ["2024-01-01T00:00:00+01:00", "2024-02-01 10:00", "2024-03-01"],
            "flag": ["true", "False", "TRUE"],
            "mixed": [1, 2.5, 3],
        }
    )
    spec = infer_spec(frame, name="x", entity_key="k", event_time="t")
    assert spec.feature("code").categories == ["1", "2", "10"], "numeric codes in numeric order"
    assert spec.feature("when").type == FeatureType.TIMESTAMP
    assert spec.feature("flag").type == FeatureType.BOOLEAN
    assert spec.feature("mixed").type == FeatureType.NUMERIC


def test_many_distinct_text_values_are_refused_unless_numeric_or_excluded() -> None:
    frame = pd.DataFrame(
        {
            "k": [f"k{i}" for i in range(30)],
            "t": ["2024-01-01"] * 30,
            "note": [f"free text {i}" for i in range(30)],
            "count": [str(i) for i in range(30)],
        }
    )
    with pytest.raises(InferenceError, match=r"'note' has 30 distinct text values.*--exclude"):
        infer_spec(frame, name="x", entity_key="k", event_time="t")
    spec = infer_spec(frame, name="x", entity_key="k", event_time="t", exclude=["note"])
    assert spec.feature("count").type == FeatureType.INTEGER
    assert spec.feature("count").expected_max == 31, "29 + 5% of the spread 29, rounded up"
    wide = infer_spec(frame, name="x", entity_key="k", event_time="t", max_categories=40)
    assert wide.feature("note").type == FeatureType.CATEGORICAL


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entity_key": "nobody"}, r"--entity-key 'nobody': no such column.*columns: customer"),
        ({"label": "nope"}, r"--label 'nope': no such column"),
        ({"record_id": "id"}, r"--record-id 'id'"),
        ({"name": "Bad Name"}, r"not valid"),
        ({"max_categories": 0}, r"at least 1"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(InferenceError, match=message):
        infer(**kwargs)


def test_unusable_columns_are_refused_with_a_reason() -> None:
    frame = a_frame().assign(empty=[None] * 4)
    with pytest.raises(InferenceError, match="'empty' has no value in the sample"):
        infer(frame)
    with pytest.raises(InferenceError, match="not valid feature names"):
        infer(a_frame().rename(columns={"amount": "Amount ($)"}))
    with pytest.raises(InferenceError, match="no rows"):
        infer(a_frame().iloc[0:0])


def test_a_continuous_label_is_a_regression_and_a_text_label_has_categories() -> None:
    regression = infer(label="amount")
    assert regression.label is not None and regression.label.task == "regression"
    assert regression.model.estimator.endswith("Regressor")
    classes = infer(label="channel")
    assert classes.label is not None
    assert (classes.label.type, classes.label.categories) == (
        FeatureType.CATEGORICAL,
        ["shop", "web"],
    )
    feedback = infer(label="churned", label_arrival="feedback")
    assert feedback.label is not None and feedback.label.arrival == "feedback"


def test_the_yaml_form_loads_back_to_the_same_spec() -> None:
    spec = infer(label="churned", record_id=None, description="a shop")
    text = spec_to_yaml(spec, header="made by a test")
    assert text.startswith("# made by a test\n")
    assert DatasetSpec.model_validate(yaml.safe_load(text)).fingerprint() == spec.fingerprint()
    assert "expected_min: 0, expected_max: 10}" in text, "whole numbers print as integers"


def test_inferring_the_loans_sample_finds_the_shipped_types() -> None:
    rows = [r for r, _ in agrawal_records(3000, seed=0, start=START)]
    spec = infer_spec(
        pd.DataFrame(rows),
        name="loans",
        entity_key="applicant_id",
        event_time="applied_at",
        record_id="application_id",
    )
    shipped = next(s for s in shipped_specs() if s.name == "loans")
    for feature in shipped.features:
        inferred = spec.feature(feature.name)
        assert inferred.type == feature.type, feature.name
        assert inferred.categories == feature.categories, feature.name


def test_the_cli_prints_a_valid_spec_for_csv_parquet_and_json(tmp_path: Path, capsys) -> None:
    rows = [r for r, _ in breast_cancer_records(100, seed=0, start=START)]
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "s.csv", index=False)
    frame.to_parquet(tmp_path / "s.parquet")
    (tmp_path / "s.json").write_text(json.dumps(rows))
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    specs = []
    for name in ("s.csv", "s.parquet", "s.json", "s.jsonl"):
        code = main(
            [
                str(tmp_path / name),
                "--name=breast_cancer",
                "--entity-key=patient_id",
                "--event-time=examined_at",
                "--record-id=sample_id",
                "--label=diagnosis",
            ]
        )
        out = capsys.readouterr().out
        assert code == 0, name
        specs.append(DatasetSpec.model_validate(yaml.safe_load(out)))
    assert len({s.fingerprint() for s in specs}) == 1, "every format gives the same spec"
    assert len(specs[0].features) == 30


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (None, "missing.csv", "no such file"),
        (b"a,b\n1,2\n", "sample.xlsx", "unknown format '.xlsx'"),
        (b"not parquet at all", "sample.parquet", "cannot read .* as parquet"),
        (b'{"a": 1}', "sample.json", "expected a JSON array of objects"),
        (b"[1, 2", "sample.json", "cannot read .* as json"),
    ],
)
def test_the_cli_explains_unreadable_input(
    tmp_path: Path, capsys, content: bytes | None, filename: str, message: str
) -> None:
    path = tmp_path / filename
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InferenceError, match=message):
        read_sample(path)
    code = main([str(path), "--name=x", "--entity-key=a", "--event-time=b"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_the_cli_names_an_unknown_column(tmp_path: Path, capsys) -> None:
    (tmp_path / "s.csv").write_text("a,b,c\n1,2024-01-01,3\n")
    assert main([str(tmp_path / "s.csv"), "--name=x", "--entity-key=a", "--event-time=t"]) == 2
    assert "--event-time 't': no such column in the sample; columns: a, b, c" in (
        capsys.readouterr().err
    )


def cli_spec(path: Path, capsys, *options: str) -> tuple[DatasetSpec, str, str]:
    """The spec the CLI prints for a sample file, its YAML text and its warnings."""
    assert main([str(path), *options]) == 0
    captured = capsys.readouterr()
    return DatasetSpec.model_validate(yaml.safe_load(captured.out)), captured.out, captured.err


def assert_registrable(text: str) -> None:
    """What ingestion's POST /datasets does with a YAML body, short of publishing it."""
    parsed = parse_spec(text.encode(), "application/yaml")
    assert parsed.fingerprint() == DatasetSpec.model_validate(yaml.safe_load(text)).fingerprint()


def test_a_classification_csv_with_its_label_gives_expected_ranges_and_its_promotion_rule(
    tmp_path: Path, capsys
) -> None:
    rows = [r for r, _ in breast_cancer_records(200, seed=3, start=START)]
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "exams.csv", index=False)

    spec, text, _ = cli_spec(
        tmp_path / "exams.csv",
        capsys,
        "--name=exams",
        "--entity-key=patient_id",
        "--event-time=examined_at",
        "--record-id=sample_id",
        "--label=diagnosis",
    )

    for feature in spec.features:
        assert_widened(feature, frame[feature.name].min(), frame[feature.name].max())
    assert spec.label is not None and spec.task == "classification"
    assert spec.model.estimator.endswith("Classifier")
    assert spec.model.primary_metric == "roc_auc" and spec.model.higher_is_better is None
    assert spec.model.metric_for("classification") == ("roc_auc", True)
    assert "# higher_is_better: true  # unset: roc_auc's own direction" in text
    assert "# Promotion: a new version replaces the champion when its roc_auc" in text
    assert "# promotion_margin:" in text and "# min_evaluation_rows:" in text
    assert "accepted, flagged (out_of_range)" in text
    assert_registrable(text)


def test_a_regression_csv_gives_a_regression_label_rmse_and_ranges_below_zero(
    tmp_path: Path, capsys
) -> None:
    diabetes = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    diabetes.insert(0, "patient", [f"p{i}" for i in range(len(diabetes))])
    diabetes.insert(1, "seen_at", pd.date_range("2024-01-01", periods=len(diabetes), freq="h"))
    diabetes.to_csv(tmp_path / "diabetes.csv", index=False)

    spec, text, _ = cli_spec(
        tmp_path / "diabetes.csv",
        capsys,
        "--name=diabetes",
        "--entity-key=patient",
        "--event-time=seen_at",
        "--label=progression",
    )

    assert spec.label is not None and spec.task == "regression"
    assert spec.model.estimator.endswith("Regressor")
    assert spec.model.metric_for("regression") == ("rmse", False)
    assert "# higher_is_better: false" in text
    assert "when its rmse on the same holdout" in text and "is lower than" in text
    for feature in spec.features:
        if feature.type in (FeatureType.NUMERIC, FeatureType.INTEGER):
            assert_widened(feature, diabetes[feature.name].min(), diabetes[feature.name].max())
    age = spec.feature("age")
    assert age.expected_min is not None and age.expected_min < diabetes["age"].min() < 0
    assert_registrable(text)


@pytest.mark.parametrize(
    ("distinct", "task"),
    [(2, "classification"), (20, "classification"), (21, "regression"), (300, "regression")],
)
def test_an_integer_label_is_a_regression_only_with_more_distinct_values_than_categories(
    distinct: int, task: str
) -> None:
    frame = pd.DataFrame(
        {
            "k": [f"k{i}" for i in range(600)],
            "t": ["2024-01-01"] * 600,
            "x": [i * 0.5 for i in range(600)],
            "y": [i % distinct for i in range(600)],
        }
    )
    spec = infer_spec(frame, name="x", entity_key="k", event_time="t", label="y")
    assert spec.task == task
    assert (
        spec.model.metric_for(task)[0] == {"classification": "roc_auc", "regression": "rmse"}[task]
    )


def test_the_task_can_be_chosen_and_a_regression_on_a_text_label_is_refused() -> None:
    chosen = infer(label="items", task="regression")
    assert chosen.task == "regression" and chosen.model.primary_metric == "rmse"
    with pytest.raises(InferenceError, match=r"label 'channel' is categorical, not a number"):
        infer(label="channel", task="regression")
    with pytest.raises(InferenceError, match=r"no --label"):
        infer(task="classification")


def test_categorical_columns_likely_to_meet_unseen_categories_are_named_with_the_reason(
    tmp_path: Path, capsys
) -> None:
    n = 200
    frame = pd.DataFrame(
        {
            "k": [f"k{i}" for i in range(n)],
            "t": ["2024-01-01"] * n,
            "plan": [["basic", "pro", "team"][i % 3] for i in range(n)],
            "city": [f"city{i}" if i < 15 else "paris" for i in range(n)],
        }
    )
    spec = infer_spec(frame, name="x", entity_key="k", event_time="t")
    assert spec.feature("city").type == FeatureType.CATEGORICAL, "16 values: low cardinality"
    [note] = unseen_category_notes(frame, spec)
    assert note.startswith("city: 16 categories in 200 values, 15 seen only once")
    assert "rejected (rule category)" in note
    frame.to_csv(tmp_path / "s.csv", index=False)
    _, text, err = cli_spec(
        tmp_path / "s.csv", capsys, "--name=x", "--entity-key=k", "--event-time=t"
    )
    assert err.count("warning: ") == 1 and "city: 16 categories" in err
    assert "# - warning: city: 16 categories" in text
