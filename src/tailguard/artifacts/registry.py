"""Embedded model registry: a SQLite index plus a file store under ``TAILGUARD_HOME``.

Layout::

    $TAILGUARD_HOME/registry.db              index of (name, version) -> manifest
    $TAILGUARD_HOME/artifacts/NAME/VERSION/  verified copy of the artifact directory

Registering copies the directory into the store after verifying it; loading verifies again,
so files altered after registration are refused too.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from tailguard.artifacts.manifest import (
    ArtifactError,
    Manifest,
    update_profile,
    verify_artifact,
)


def tailguard_home() -> Path:
    return Path(os.environ.get("TAILGUARD_HOME", ".tailguard")).resolve()


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``name`` or ``name:version`` -> (name, version or None for the latest)."""
    name, _, version = ref.partition(":")
    if not name:
        raise ArtifactError(f"model reference {ref!r} must look like NAME or NAME:VERSION")
    return name, (version or None)


class Registry:
    """Index and store of artifacts. Safe for several processes (SQLite, atomic renames)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home) if home is not None else tailguard_home()
        self.store = self.home / "artifacts"
        self.store.mkdir(parents=True, exist_ok=True)
        self._db_path = self.home / "registry.db"
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS models ("
                " name TEXT NOT NULL, version TEXT NOT NULL, created_at TEXT NOT NULL,"
                " registered_seq INTEGER NOT NULL, manifest TEXT NOT NULL,"
                " PRIMARY KEY (name, version))"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._db_path, timeout=30)

    def register(self, path: Path, *, replace: bool = False) -> Manifest:
        """Verify the artifact at ``path``, copy it into the store and index it."""
        manifest = verify_artifact(Path(path))
        dest = self.store / manifest.name / manifest.version
        with self._connect() as db:
            row = db.execute(
                "SELECT manifest FROM models WHERE name=? AND version=?",
                (manifest.name, manifest.version),
            ).fetchone()
            if row is not None and not replace:
                if Manifest.model_validate_json(row[0]).files == manifest.files:
                    return manifest  # registering the same artifact twice changes nothing
                raise ArtifactError(
                    f"{manifest.ref} is already registered with different files; "
                    "bump the version (or pass replace=True)"
                )
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.", dir=dest.parent))
        try:
            shutil.copytree(path, staging, dirs_exist_ok=True)
            verify_artifact(staging)
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        with self._connect() as db:
            seq = db.execute(
                "SELECT COALESCE(MAX(registered_seq), 0) + 1 FROM models").fetchone()[0]
            db.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?)",
                (manifest.name, manifest.version, manifest.created_at, seq,
                 manifest.model_dump_json()),
            )
        return manifest

    def set_profile(self, ref: str, profile: dict[str, object]) -> Manifest:
        """Record a measured serving profile for a registered artifact (store and index)."""
        manifest, path = self.get(ref)
        manifest = update_profile(path, dict(profile))
        with self._connect() as db:
            db.execute("UPDATE models SET manifest=? WHERE name=? AND version=?",
                       (manifest.model_dump_json(), manifest.name, manifest.version))
        return manifest

    def list(self, name: str | None = None) -> list[Manifest]:
        query = "SELECT manifest FROM models"
        args: tuple[str, ...] = ()
        if name is not None:
            query += " WHERE name=?"
            args = (name,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY name, registered_seq", args).fetchall()
        return [Manifest.model_validate_json(r[0]) for r in rows]

    def get(self, ref: str) -> tuple[Manifest, Path]:
        """Resolve ``name[:version]`` (latest registered when no version) and verify its files."""
        name, version = parse_ref(ref)
        with self._connect() as db:
            if version is None:
                row = db.execute(
                    "SELECT manifest FROM models WHERE name=? ORDER BY registered_seq DESC LIMIT 1",
                    (name,),
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT manifest FROM models WHERE name=? AND version=?", (name, version)
                ).fetchone()
        if row is None:
            known = sorted({m.ref for m in self.list(name)}) if version else []
            hint = f"; registered versions: {known}" if known else ""
            raise ArtifactError(f"model {ref!r} is not registered in {self.home}{hint}")
        manifest = Manifest.model_validate_json(row[0])
        path = self.store / manifest.name / manifest.version
        verify_artifact(path)
        return manifest, path
