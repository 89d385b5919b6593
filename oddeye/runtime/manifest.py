"""The export manifest (`oddeye_export.json`): what an exported artefact takes, returns and means; read and checked
here (torch-free), written by `oddeye.export`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from oddeye.core.errors import ModelError

MANIFEST = "oddeye_export.json"
FORMAT = "oddeye-export"
FORMAT_VERSION = 1
REEXPORT = "export the model again with `oddeye export MODEL_DIR --out DIR`"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def locate(path: str | Path) -> Path:
    """The export folder of `path`: the folder itself, or the folder of a model file (model.onnx, model.xml)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    if p.is_file():
        return p.parent
    raise ModelError(f"export not found: {p}", "pass the --out folder of `oddeye export` or its model file")


def read_export(path: str | Path, verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """(export folder, manifest) of an export folder or model file; a missing or corrupt manifest or a file whose
    checksum differs from the manifest's is a ModelError naming the file."""
    d = locate(path)
    man = d / MANIFEST
    if not man.is_file():
        raise ModelError(f"{d} holds no {MANIFEST}: not an oddeye export", REEXPORT)
    try:
        doc = json.loads(man.read_text())
        if doc.get("format") != FORMAT:
            raise KeyError("format")
        files = dict(doc["files"])
        digests = dict(doc["sha256"])
        version = int(doc["format_version"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"export manifest {man} is corrupt ({type(e).__name__}: {e})", REEXPORT) from None
    if version > FORMAT_VERSION:
        raise ModelError(f"{man} has export format {version}, newer than this oddeye's ({FORMAT_VERSION})",
                         "upgrade oddeye")
    for role, name in files.items():
        f = d / name
        if not f.is_file():
            raise ModelError(f"{f} is missing (the export's {role} file)", REEXPORT)
        if verify and name in digests and sha256(f) != digests[name]:
            raise ModelError(f"{f} is corrupt: its checksum differs from the one in {man}", REEXPORT)
    return d, doc


def input_spec(doc: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The manifest's description of input `name` (default: the first)."""
    for spec in doc["inputs"]:
        if name is None or spec["name"] == name:
            return spec
    raise ModelError(f"the export has no input {name!r}", REEXPORT)


def describe_input(spec: dict[str, Any]) -> str:
    """One line naming an input: 'images: uint8 (batch, 256, 256, 3), RGB'."""
    shape = ", ".join(str(s) for s in spec["shape"])
    extra = f", {spec['layout']}" if spec.get("layout") else ""
    return f"{spec['name']}: {spec['dtype']} ({shape}){extra}"
