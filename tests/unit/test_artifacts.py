"""Artifact format and registry: hashes, tamper detection, versions, idempotent register."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tailguard.artifacts import ArtifactError, Manifest, Registry, build_artifact, verify_artifact


def _artifact(path: Path, version: str = "1", scale: float = 1.0) -> Manifest:
    manifest = Manifest(name="toy", version=version, entrypoint="tailguard.models.echo:Echo",
                        metrics={"accuracy": 0.9}, lineage={"data": "abc"})
    (path / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (path / "notes.txt").write_text("hello")
    return build_artifact(path, manifest, tensors={"w": torch.ones(4) * scale})


def test_manifest_lists_sha256_of_every_file(tmp_path: Path) -> None:
    m = _artifact(tmp_path / "a")
    assert set(m.files) == {"weights.safetensors", "notes.txt"}
    assert verify_artifact(tmp_path / "a").files == m.files


@pytest.mark.parametrize("damage", ["tamper", "truncate", "delete", "extra"])
def test_damaged_artifact_is_refused_naming_the_file(tmp_path: Path, damage: str) -> None:
    _artifact(tmp_path / "a")
    weights = tmp_path / "a" / "weights.safetensors"
    if damage == "tamper":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:10])
    elif damage == "delete":
        weights.unlink()
    else:
        (tmp_path / "a" / "smuggled.py").write_text("print(1)")
    with pytest.raises(ArtifactError, match="smuggled.py" if damage == "extra" else
                       "weights.safetensors"):
        verify_artifact(tmp_path / "a")


def test_registry_versions_latest_and_idempotence(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "home")
    reg.register(_artifact(tmp_path / "v1", "1") and tmp_path / "v1")
    reg.register(_artifact(tmp_path / "v2", "2", scale=2.0) and tmp_path / "v2")
    reg.register(tmp_path / "v1")  # same files again: no change
    assert [m.ref for m in reg.list()] == ["toy:1", "toy:2"]
    assert reg.get("toy")[0].version == "2"
    assert reg.get("toy:1")[0].version == "1"
    _artifact(tmp_path / "v1b", "1", scale=3.0)
    with pytest.raises(ArtifactError, match="already registered with different files"):
        reg.register(tmp_path / "v1b")
    with pytest.raises(ArtifactError, match="not registered"):
        reg.get("toy:9")


def test_store_copy_tampered_after_register_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "home")
    _artifact(tmp_path / "v1")
    reg.register(tmp_path / "v1")
    _, stored = reg.get("toy:1")
    (stored / "notes.txt").write_text("changed")
    with pytest.raises(ArtifactError, match="notes.txt fails its sha256 check"):
        reg.get("toy:1")


def test_bad_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be 1-128 characters"):
        Manifest(name="../etc", version="1", entrypoint="a:b")
