"""``tailguard keys``: the digests a serve config holds (issue 19, item 6)."""

from __future__ import annotations

from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.serve.gate.tenants import hash_api_key, verify_api_key


def test_hash_prints_the_digest_the_config_accepts() -> None:
    result = CliRunner().invoke(app, ["keys", "hash", "sk-live-abc123"])
    assert result.exit_code == 0
    assert result.output.strip() == hash_api_key("sk-live-abc123")


def test_hash_reads_keys_from_stdin() -> None:
    result = CliRunner().invoke(app, ["keys", "hash"], input="a\n\nb\n")
    assert result.exit_code == 0
    assert result.output.split() == [hash_api_key("a"), hash_api_key("b")]
    empty = CliRunner().invoke(app, ["keys", "hash"], input="")
    assert empty.exit_code == 2 and "pipe keys in" in empty.output


def test_new_key_matches_its_digest() -> None:
    result = CliRunner().invoke(app, ["keys", "new"])
    assert result.exit_code == 0
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines())
    key, digest = lines["key"].strip(), lines["digest"].strip()
    assert key.startswith("tg-") and len(key) > 40
    assert verify_api_key(key, digest)
