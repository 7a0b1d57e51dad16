"""Dataset checks that run in the engine before any worker starts.

Every worker would hit the same bad dataset — a missing column, a column of the wrong type,
no rows, a missing held-out set — after importing torch and joining the group, and the
supervisor would restart the group ``max_restarts`` times before giving up. These checks
read only each dataset's ``index.json`` (schema and row counts, no shard), so they cost
milliseconds and fail once, with a message that names the column and lists what exists.

The rules mirror what the trainer's collator accepts:

- one feature column: a number, a list of numbers, or a string (for text models, which take
  a list of ``str``; the built-in ``mlp`` needs numbers);
- several feature columns: numbers only (they are stacked into one matrix);
- the label: an integer class for ``cross_entropy``; a number or list of numbers for ``mse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tailguard.data.index import read_index
from tailguard.data.schema import DataError, Schema
from tailguard.train.batching import resolve_columns
from tailguard.train.job import DataSpec, JobError, LossName, TrainJob

_INTEGER = frozenset({"int64", "int32", "bool"})
_NUMBER = _INTEGER | {"float64", "float32"}
_NUMBER_LIST = frozenset({f"{t}[]" for t in ("int64", "int32", "float64", "float32")})
_NUMERIC_BUILDERS = frozenset({"mlp"})


@dataclass(frozen=True)
class DatasetFacts:
    """What the preflight learnt about one dataset (for messages and tests)."""

    role: str  # "train" | "eval"
    path: str
    rows: int
    features: tuple[str, ...]


def _describe(schema: Schema) -> str:
    return ", ".join(f"{c.name} ({c.spec})" for c in schema.columns)


def _check_features(role: str, path: str, job: TrainJob, schema: Schema) -> list[str]:
    try:
        features = resolve_columns(job.data.features, schema.names)
    except ValueError as exc:
        raise JobError(f"data.{role} ({path}): {exc}; its columns are: "
                       f"{_describe(schema)}") from None
    types = {c.name: c.type for c in schema.columns}
    if len(features) == 1:
        kind = types[features[0]]
        if kind == "string" and job.model.builder in _NUMERIC_BUILDERS:
            raise JobError(
                f"data.{role} ({path}): feature column {features[0]!r} is a string but model "
                f"{job.model.builder!r} needs numbers (a number or float32[] column); its "
                f"columns are: {_describe(schema)}")
        if kind not in _NUMBER | _NUMBER_LIST | {"string"}:
            raise JobError(f"data.{role} ({path}): feature column {features[0]!r} has "
                           f"unsupported type {kind}")
        return features
    wrong = [f"{name} ({types[name]})" for name in features if types[name] not in _NUMBER]
    if wrong:
        raise JobError(
            f"data.{role} ({path}): several feature columns are stacked into one matrix, so "
            f"each must be a number; these are not: {', '.join(wrong)} (use one list or "
            "string column on its own instead)")
    return features


def _check_label(role: str, path: str, job: TrainJob, schema: Schema) -> None:
    label = job.data.label
    if label in job.data.features:
        raise JobError(f"data.label {label!r} is also listed as a feature")
    kinds = {c.name: c.type for c in schema.columns}
    if label not in kinds:
        raise JobError(f"data.{role} ({path}): label column {label!r} not found; its columns "
                       f"are: {_describe(schema)}")
    kind = kinds[label]
    if job.objective.loss is LossName.CROSS_ENTROPY and kind not in _INTEGER:
        raise JobError(
            f"data.{role} ({path}): label column {label!r} is {kind}, but loss "
            "'cross_entropy' needs integer class ids (int64/int32); re-ingest with "
            f"--schema '{{\"{label}\": \"int64\"}}' or use loss 'mse' for regression")
    if job.objective.loss is LossName.MSE and kind not in _NUMBER | _NUMBER_LIST:
        raise JobError(f"data.{role} ({path}): label column {label!r} is {kind}, but loss "
                       "'mse' needs a number or a list of numbers")


def check_dataset(role: str, path: Path, job: TrainJob) -> DatasetFacts:
    """Validate one ingested dataset against the job; raise :class:`JobError` saying what to
    fix. Reads ``index.json`` only."""
    where = str(path)
    try:
        index = read_index(where)
    except DataError as exc:
        raise JobError(f"data.{role}: {exc}") from None
    features = _check_features(role, where, job, index.schema)
    _check_label(role, where, job, index.schema)
    if index.total_rows == 0:
        raise JobError(f"data.{role} ({where}): the dataset has 0 rows; ingest a non-empty "
                       "source")
    return DatasetFacts(role, where, index.total_rows, tuple(features))


def run_data_checks(job: TrainJob) -> None:
    """``data.checks``: one streaming pass over train (against eval: leakage, drift); a
    failing rule raises :class:`JobError` naming the rule, the column and example rows. The
    report is kept beside the training set, where the artifact's lineage finds it."""
    if job.data.checks is None or job.data.checks is False:
        return
    from tailguard.data.checks import DataCheckFailed, load_rules, run_check

    try:
        rules = load_rules(job.data.checks)
        report = run_check(str(job.data.train), rules,
                           against=None if job.data.eval is None else str(job.data.eval),
                           label=job.data.label)
        if not report.passed:
            raise DataCheckFailed(report, role="train")
    except DataError as exc:
        raise JobError(f"data.checks: {exc}\nno worker was started; fix the data or relax "
                       "the rule (severity: warn)") from None


def check_job_data(job: TrainJob) -> list[DatasetFacts]:
    """Check the job's training and held-out datasets (built-in dataset factory only: a
    custom factory owns its own format). Eval needs the same resolved features as train;
    then ``data.checks`` runs, if set."""
    if job.data.dataset_factory != DataSpec.model_fields["dataset_factory"].default:
        return []
    facts = [check_dataset("train", job.data.train, job)]
    if job.data.eval is not None:
        held_out = check_dataset("eval", job.data.eval, job)
        if held_out.features != facts[0].features:
            raise JobError(f"data.eval ({job.data.eval}): features resolve to "
                           f"{list(held_out.features)} but data.train's to "
                           f"{list(facts[0].features)}; the held-out set needs the same columns")
        facts.append(held_out)
    run_data_checks(job)
    return facts
