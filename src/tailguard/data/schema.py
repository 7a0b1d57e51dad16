"""Column schemas for ingested datasets: a handful of types, strict casts, inference.

A schema is written as a mapping ``column -> type`` where type is one of ``int64``,
``int32``, ``float64``, ``float32``, ``bool`` or ``string`` (aliases such as ``int``,
``float``, ``str`` are accepted), or a list of numbers: ``int64[]``, ``int32[]``,
``float64[]``, ``float32[]`` (JSON arrays; in CSV cells, JSON text such as ``"[1, 2]"``).
A trailing ``?`` marks a column as nullable (``"label": "int64?"``); every other column is
*required*: a row without a value for it is a bad row. Casts are strict — ``"1.5"`` is not
an ``int64``, ``"yes"`` is not a float — so that a schema mismatch shows up as bad rows with
their line numbers instead of silently turning into nulls or zeros.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


class DataError(Exception):
    """Base class of every error raised by :mod:`tailguard.data`."""


class SchemaError(DataError):
    """A schema is malformed or a column type is not supported."""


_ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
_LIST_ELEMENTS = ("int64", "int32", "float64", "float32")
_ARROW_TYPES.update({f"{e}[]": pa.list_(_ARROW_TYPES[e]) for e in _LIST_ELEMENTS})
_ALIASES = {
    "int": "int64",
    "integer": "int64",
    "long": "int64",
    "float": "float64",
    "double": "float64",
    "number": "float64",
    "str": "string",
    "text": "string",
    "utf8": "string",
    "boolean": "bool",
}
_INT_BOUNDS = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1)}
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})

Converter = Callable[[Any], Any]
"""Turns a raw value (``str`` from CSV, any JSON value) into the column's Python value.

Raises ``ValueError`` with a short reason when the value is not castable.
"""


@dataclass(frozen=True)
class Column:
    """One column: its name, type name (see module docs) and whether nulls are allowed."""

    name: str
    type: str
    nullable: bool = False
    pii: str | None = None
    """``"drop"`` or ``"hash"``: personal data removed or keyed at ingest (see
    :mod:`tailguard.data.checks.pii`)."""

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.type]

    @property
    def spec(self) -> str:
        """The type as written in a schema mapping (``"int64"`` or ``"int64?"``)."""
        return self.type + ("?" if self.nullable else "")


@dataclass(frozen=True)
class Schema:
    """An ordered tuple of columns. Build it with :func:`parse_schema` or :func:`infer_schema`."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if not names:
            raise SchemaError("a schema needs at least one column")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"duplicate column names in schema: {dupes}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_mapping(self) -> dict[str, Any]:
        return {c.name: c.spec if c.pii is None else {"type": c.spec, "pii": c.pii}
                for c in self.columns}

    @property
    def pii(self) -> dict[str, str]:
        """Columns declared as personal data and what ingest does with them."""
        return {c.name: c.pii for c in self.columns if c.pii is not None}

    def stored(self) -> Schema:
        """The schema of what ingest writes: ``pii: drop`` columns gone, ``pii: hash`` ones
        plain strings (hex HMACs)."""
        return Schema(tuple(Column(c.name, "string" if c.pii == "hash" else c.type,
                                   c.nullable) for c in self.columns if c.pii != "drop"))

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns]
        )


def parse_schema(mapping: Mapping[str, Any]) -> Schema:
    """Validate a ``column -> type`` mapping (see the module docs for the type names).

    A type may also be written ``{"type": "string", "pii": "hash"}`` (or ``"drop"``) to
    declare personal data that ingest keys with an HMAC or removes.
    """
    if not isinstance(mapping, Mapping) or not mapping:
        raise SchemaError("a schema must be a non-empty JSON object mapping column -> type")
    columns = []
    for name, raw in mapping.items():
        if not isinstance(name, str) or not name:
            raise SchemaError(f"column names must be non-empty strings, got {name!r}")
        pii = None
        if isinstance(raw, Mapping):
            extra = set(raw) - {"type", "pii"}
            if extra or "type" not in raw:
                raise SchemaError(f"column {name!r}: expected {{type: ..., pii: drop|hash}}, "
                                  f"got {dict(raw)!r}")
            pii = raw.get("pii")
            if pii not in (None, "drop", "hash"):
                raise SchemaError(f"column {name!r}: pii must be 'drop' or 'hash', got {pii!r}")
            raw = raw["type"]
        if not isinstance(raw, str):
            raise SchemaError(f"column {name!r}: type must be a string like 'int64', got {raw!r}")
        spec = raw.strip().lower()
        nullable = spec.endswith("?")
        base = spec.rstrip("?")
        is_list = base.endswith("[]")
        base = base.removesuffix("[]")
        base = _ALIASES.get(base, base) + ("[]" if is_list else "")
        if base not in _ARROW_TYPES:
            raise SchemaError(
                f"column {name!r}: unknown type {raw!r}; use one of {sorted(_ARROW_TYPES)} "
                "(append '?' for a nullable column)"
            )
        if pii == "hash" and base != "string":
            raise SchemaError(f"column {name!r}: 'pii: hash' needs a string column, not {base}")
        columns.append(Column(name, base, nullable, pii))
    return Schema(tuple(columns))


def load_schema_option(value: str) -> Schema:
    """Parse the CLI's ``--schema``: inline JSON (starting with ``{``) or a JSON file path."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise SchemaError(
                f"--schema {value!r}: not inline JSON and not a readable file ({exc})"
            ) from exc
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"--schema {value!r}: invalid JSON ({exc})") from exc
    return parse_schema(mapping)


def type_from_arrow(arrow_type: pa.DataType, name: str = "?") -> str:
    """Map an inferred Arrow type to one of ours; exotic scalars (dates …) become strings."""
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        elem = arrow_type.value_type
        if pa.types.is_integer(elem):
            return "int64[]"
        if pa.types.is_floating(elem):
            return "float64[]"
    if pa.types.is_nested(arrow_type):
        raise SchemaError(
            f"column {name!r} has nested type {arrow_type}, which is not supported (lists of "
            "numbers are); pass --schema naming only the columns to keep"
        )
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "int64"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float64"
    return "string"


def infer_schema(table: pa.Table) -> Schema:
    """A schema from a sample: column types from Arrow, nullable where the sample has nulls."""
    return Schema(
        tuple(
            Column(
                field.name, type_from_arrow(field.type, field.name), table.column(i).null_count > 0
            )
            for i, field in enumerate(table.schema)
        )
    )


def infer_python_type(values: Sequence[Any], name: str = "?") -> str:
    """The narrowest of our types holding every non-null JSON value in ``values``."""
    present = [v for v in values if v is not None]
    if not present:
        return "string"
    if any(isinstance(v, list | dict) for v in present):
        if all(isinstance(v, list) for v in present):
            elems = [e for v in present for e in v]
            kind = infer_python_type(elems, name) if elems else "float64"
            if kind in ("int64", "float64"):
                return kind + "[]"
        raise SchemaError(
            f"column {name!r} holds nested values other than lists of numbers, which are not "
            "supported; pass --schema naming only the columns to keep"
        )
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "float64"
    return "string"


def _to_int(bounds: tuple[int, int]) -> Converter:
    lo, hi = bounds

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is a boolean, not an integer")
        if isinstance(value, int):
            out = value
        elif isinstance(value, float) and value.is_integer():
            out = int(value)
        elif isinstance(value, str):
            try:
                out = int(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not an integer") from None
        else:
            raise ValueError(f"{value!r} is not an integer")
        if not lo <= out <= hi:
            raise ValueError(f"{value!r} is out of range for the column type")
        return out

    return convert


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    raise ValueError(f"{value!r} is not a number")


def _to_float32(value: Any) -> float:
    out = _to_float(value)
    if math.isfinite(out) and abs(out) > 3.4028234663852886e38:
        raise ValueError(f"{value!r} is out of range for float32")
    return out


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValueError(f"{value!r} is not a boolean (use true/false, 1/0, yes/no)")


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise ValueError(f"a nested value ({type(value).__name__}) is not a string")


def _to_list(element: Converter) -> Converter:
    def convert(value: Any) -> list[Any]:
        if isinstance(value, str):  # CSV cells hold lists as JSON text: "[1, 2, 3]"
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a JSON list") from None
        if not isinstance(value, list | tuple):
            raise ValueError(f"{value!r} is not a list")
        if any(v is None for v in value):
            raise ValueError("a list element is null")
        return [element(v) for v in value]

    return convert


def converter(column_type: str) -> Converter:
    """The strict cast for one of our type names (see :data:`Converter`)."""
    if column_type.endswith("[]"):
        return _to_list(converter(column_type.removesuffix("[]")))
    if column_type in _INT_BOUNDS:
        return _to_int(_INT_BOUNDS[column_type])
    return {
        "float64": _to_float,
        "float32": _to_float32,
        "bool": _to_bool,
        "string": _to_string,
    }[column_type]
