"""Personal data: recognising it in string columns, and removing or keying it at ingest.

Recognising: a value *looks like* an e-mail address, a phone number (digits with a leading
``+`` or separators) or a payment-card number (13-19 digits from 3-6, passing the Luhn check)
when the whole value, trimmed, matches; the check
samples values per shard (RE2 through Arrow, Luhn in Python on the few candidates only).

Protecting: a schema column declared ``{"type": "string", "pii": "hash"}`` is replaced at
ingest by ``HMAC-SHA256(key, value)`` in hex, with the key read from ``TAILGUARD_PII_KEY``
and never written anywhere — equal values still join and count as equal, but a value cannot
be recovered or confirmed without the key. ``"pii": "drop"`` removes the column.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from tailguard.data.schema import DataError

PII_KEY_ENV = "TAILGUARD_PII_KEY"
PII_ACTIONS = ("drop", "hash")

_EMAIL = r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$"
# a leading + or a separator: a bare run of digits is more often an id than a phone number
_PHONE = r"^(?:\+\(?\d[\d\s().\-]{5,18}\d|\(?\d[\d().\-]*[\s().\-][\d\s().\-]{4,17}\d)$"
# card networks' prefixes (3 Amex/Diners/JCB, 4 Visa, 5 Mastercard, 6 Discover), 13-19 digits
_CARD = r"^[3-6](?:[ \-]?\d){12,18}$"
KINDS = ("email", "phone", "card")


class PiiKeyError(DataError):
    """A column is declared ``pii: hash`` but no key is set in the environment."""


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def detect(values: pa.Array) -> dict[str, pa.Array]:
    """For a string array: a boolean mask per kind (``email``, ``phone``, ``card``)."""
    trimmed = pc.utf8_trim_whitespace(values)
    email = pc.fill_null(pc.match_substring_regex(trimmed, _EMAIL), False)
    card_shape = pc.fill_null(pc.match_substring_regex(trimmed, _CARD), False)
    card = card_shape
    digits = pc.replace_substring_regex(trimmed, pattern=r"[^0-9]", replacement="")
    if pc.any(card_shape).as_py():
        flags = [bool(s) and bool(c) and luhn_ok(str(d))
                 for s, c, d in zip(card_shape.to_pylist(), card_shape.to_pylist(),
                                    digits.to_pylist(), strict=True)]
        card = pa.array(flags, pa.bool_())
    # 9+ digits: an ISO date (2024-01-01, 8 digits) has a phone's shape but is not one
    phone_shape = pc.and_(pc.fill_null(pc.match_substring_regex(trimmed, _PHONE), False),
                          pc.fill_null(pc.greater_equal(pc.utf8_length(digits), 9), False))
    # a card number also has a phone's shape: count it once, as a card
    phone = pc.and_(phone_shape, pc.invert(card))
    return {"email": email, "phone": phone, "card": card}


def pii_key(required: bool) -> bytes | None:
    """The HMAC key from ``TAILGUARD_PII_KEY``; a clear error when a hash column needs it."""
    raw = os.environ.get(PII_KEY_ENV)
    if not raw:
        if required:
            raise PiiKeyError(
                f"the schema declares a column 'pii: hash' but {PII_KEY_ENV} is not set; set "
                "it to a secret (e.g. `export TAILGUARD_PII_KEY=$(openssl rand -hex 32)`) and "
                "keep it: the same key gives the same hashes next time")
        return None
    return raw.encode("utf-8")


def key_id(key: bytes) -> str:
    """A short public name for the key (an HMAC of a fixed text): re-ingesting with another
    key changes the fingerprint, and the index can say which key hashed it without storing
    the key itself."""
    return hmac.new(key, b"tailguard-pii-key-id", hashlib.sha256).hexdigest()[:16]


def protect(table: pa.Table, actions: Mapping[str, str], key: bytes | None) -> pa.Table:
    """Drop or HMAC the declared columns of ``table`` (see the module docs)."""
    for name, action in actions.items():
        if name not in table.column_names:
            continue
        if action == "drop":
            table = table.drop_columns([name])
            continue
        if key is None:
            raise PiiKeyError(f"column {name!r} is declared 'pii: hash' but no key was given")
        values = table.column(name).to_pylist()
        hashed = [None if v is None else
                  hmac.new(key, str(v).encode("utf-8"), hashlib.sha256).hexdigest()
                  for v in values]
        i = table.column_names.index(name)
        table = table.set_column(i, pa.field(name, pa.string()), pa.array(hashed, pa.string()))
    return table
