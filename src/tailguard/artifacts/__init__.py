"""Model artifacts: one versioned on-disk format shared by training and serving."""

from tailguard.artifacts.manifest import (
    MANIFEST_NAME,
    ArtifactError,
    Manifest,
    TensorDecl,
    build_artifact,
    read_manifest,
    sha256_file,
    update_profile,
    verify_artifact,
    write_manifest,
)
from tailguard.artifacts.registry import Registry, parse_ref, tailguard_home

__all__ = [
    "MANIFEST_NAME",
    "ArtifactError",
    "Manifest",
    "Registry",
    "TensorDecl",
    "build_artifact",
    "parse_ref",
    "read_manifest",
    "sha256_file",
    "tailguard_home",
    "update_profile",
    "verify_artifact",
    "write_manifest",
]
