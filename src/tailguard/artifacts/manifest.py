"""The artifact format: a directory holding ``manifest.json`` plus the files it names.

``manifest.json`` records name, version, task, runtime, entrypoint (``module:Class``, a
:class:`tailguard.models.Model`), declared inputs/outputs, metrics, lineage, created_at and the
sha256 of every other file in the directory. Weights are stored as safetensors where possible.
Loading verifies every hash, so a tampered or truncated file is refused with its name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tailguard.names import NAME_RE

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class ArtifactError(Exception):
    """An artifact is missing, malformed, or fails its integrity check."""


class TensorDecl(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    datatype: str
    shape: list[int]


class Manifest(BaseModel):
    """Typed ``manifest.json``. ``files`` maps relative path -> sha256 hex digest."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str
    version: str
    task: str = "custom"
    runtime: str = "python"
    entrypoint: str
    inputs: list[TensorDecl] = Field(default_factory=list)
    outputs: list[TensorDecl] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    # Measured serving profile (``tailguard profile``): latency per batch size, throughput,
    # memory. Outside ``files``: profiling an artifact does not change its content hashes.
    profile: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    files: dict[str, str] = Field(default_factory=dict)

    @field_validator("name", "version")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} must be 1-128 characters of letters, digits, '_', '.', '-'"
            )
        return value

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _payload_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME
    )


def update_profile(directory: Path, profile: dict[str, Any]) -> Manifest:
    """Store a measured serving profile in an artifact's manifest (files stay verified)."""
    manifest = verify_artifact(directory).model_copy(update={"profile": profile})
    tmp = Path(directory) / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest.model_dump(), indent=2, sort_keys=True) + "\n")
    tmp.replace(Path(directory) / MANIFEST_NAME)
    return manifest


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Hash every file in ``directory`` into ``manifest.files`` and write manifest.json."""
    directory = Path(directory)
    files = {p.relative_to(directory).as_posix(): sha256_file(p) for p in _payload_files(directory)}
    manifest = manifest.model_copy(update={"files": files})
    tmp = directory / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest.model_dump(), indent=2, sort_keys=True) + "\n")
    tmp.replace(directory / MANIFEST_NAME)
    return manifest


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{path}: no manifest.json — not a tailguard artifact directory")
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{path}: invalid manifest: {exc}") from exc


def verify_artifact(directory: Path) -> Manifest:
    """Read the manifest and check every listed file's sha256; raise naming the bad file."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for rel, want in sorted(manifest.files.items()):
        path = directory / rel
        if not path.is_file():
            raise ArtifactError(f"artifact {manifest.ref}: file {rel} is missing ({path})")
        got = sha256_file(path)
        if got != want:
            raise ArtifactError(
                f"artifact {manifest.ref}: file {rel} fails its sha256 check "
                f"(expected {want[:12]}…, found {got[:12]}…): tampered or truncated"
            )
    listed = set(manifest.files)
    extra = [p.relative_to(directory).as_posix() for p in _payload_files(directory)]
    unlisted = sorted(set(extra) - listed)
    if unlisted:
        raise ArtifactError(f"artifact {manifest.ref}: files not in the manifest: {unlisted}")
    return manifest


def build_artifact(
    out_dir: Path,
    manifest: Manifest,
    *,
    tensors: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
) -> Manifest:
    """Write an artifact directory: optional safetensors weights (``weights.safetensors``),
    extra files copied in, and the manifest with their hashes. ``tensors`` are torch tensors.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tensors is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(out_dir / "weights.safetensors"))
    for rel, src in (extra_files or {}).items():
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return write_manifest(out_dir, manifest)
