"""The `oddeye watch` config: a YAML file of sources, checked up front; every error names the source and the key.

    db: results/store.db              # SQLite file or postgresql:// URL (default: <out>/store.db)
    out: results/live                 # artefacts (event thumbnails, folder items' overlays), one folder per source
    sources:
      - {name: gate-1, model: models/rules, source: "rtsp://10.0.0.5/stream1"}
      - {name: line-3, model: models/patchcore, source: /data/line3/incoming, kind: folder, glob: "*.png"}

Relative paths are read from the config file's folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from oddeye.core.errors import ConfigError, InputError, ModelError, yaml_problem
from oddeye.core.head import HEADS, read_manifest, score_command
from oddeye.core.headconfig import HeadConfig, param
from oddeye.core.videoio_pyav import STREAM_RE

KINDS = ("stream", "webcam", "file", "folder")
VIDEO_KINDS = ("stream", "webcam", "file")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TOP_KEYS = ("db", "out", "sources")


@dataclass
class SourceSpec(HeadConfig):
    """One live source: its name, the model folder that scores it, where frames or files come from, and how."""

    name: str = param("", doc="unique name of the source (letters, digits, . _ -); names its run and events")
    model: str = param("", doc="model folder written by `oddeye fit ...`; its manifest names the head")
    source: str = param("", doc="stream URL (rtsp/http/tcp/udp...), webcam index, video file or folder")
    kind: str = param("", choices=("", *KINDS), doc="stream | webcam | file | folder (default: from `source`)")
    loop: bool = param(False, doc="file: play it again from the start when it ends (demos)")
    glob: str = param("*", doc="folder: which files (or sub-folders) are items, e.g. '*.png'")
    fps: float | None = param(None, gt=0, doc="video: frames scored per second; faster sources are subsampled "
                                              "(default: every frame). A file plays at its own rate")
    chunk_s: float = param(2.0, gt=0, le=60, doc="video: seconds of frames scored and stored together")
    context: int = param(8, ge=0, le=250, doc="video: frames of the previous chunk scored again before each chunk")
    threshold: float | None = param(None, doc="video: events where the frame score is above this "
                                              "(default: the events the head reports)")
    poll_s: float = param(1.0, gt=0, le=3600, doc="folder: seconds between looks at the folder")
    out: str = param("", doc="artefact folder of this source (default: <out>/<name>)")


@dataclass
class WatchConfig:
    """What `oddeye watch` runs: the store, the artefact folder and the sources (checked)."""

    db: str
    out: str
    sources: list[SourceSpec]


def _is_device(source: str) -> bool:
    """A URL, a webcam index or a video device: not a path to resolve."""
    return bool(STREAM_RE.match(source)) or source.isdigit() or source.startswith("/dev/video")


def infer_kind(source: str) -> str:
    """stream | webcam | file | folder, from what `source` looks like (a missing path is a 'file')."""
    if source.isdigit() or source.startswith("/dev/video"):
        return "webcam"
    if STREAM_RE.match(source):
        return "stream"
    return "folder" if Path(source).expanduser().is_dir() else "file"


def _where(i: int, doc: dict[str, Any]) -> str:
    name = doc.get("name")
    return f"sources[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")


def _resolve(path: str, base: Path) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def check_source(doc: dict[str, Any], i: int, base: Path) -> SourceSpec:
    """One entry of `sources:` -> SourceSpec; a bad key or value is a ConfigError naming 'sources[i] (name).key'."""
    where = _where(i, doc)
    if not isinstance(doc, dict):
        raise ConfigError(where, f"expected a mapping of settings, got {doc!r}",
                          "write each source as `- {name: ..., model: ..., source: ...}`")
    known = [f.name for f in fields(SourceSpec) if f.name != "out"]
    for key in doc:
        if key not in known:
            raise ConfigError(f"{where}.{key}", f"unknown key (known: {', '.join(known)})")
    for key in ("name", "model", "source"):
        if doc.get(key) in (None, ""):
            raise ConfigError(f"{where}.{key}", "missing", "every source needs name, model and source")
    doc = {**doc, "source": str(doc["source"]) if isinstance(doc["source"], int) else doc["source"]}
    try:
        spec = SourceSpec(**doc)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e.field.split('.', 1)[-1]}", e.detail, e.hint) from None
    if not NAME_RE.match(spec.name):
        raise ConfigError(f"{where}.name", f"{spec.name!r} is not a usable name",
                          "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    spec.model = _resolve(spec.model, base)
    try:
        head = read_manifest(spec.model)["head"]
    except ModelError as e:
        raise ConfigError(f"{where}.model", e.message, e.hint) from None
    if head not in HEADS:
        raise ConfigError(f"{where}.model", f"{spec.model} holds a '{head}' model, which this oddeye does not know",
                          "upgrade oddeye, or refit the model")
    kind = spec.kind or infer_kind(spec.source if _is_device(spec.source) else _resolve(spec.source, base))
    _check_kind(spec, kind, where, base)
    spec.kind = kind
    if kind in VIDEO_KINDS and HEADS[head][0] != "video":
        raise ConfigError(f"{where}.model", f"a '{head}' model scores {HEADS[head][0]} inputs, not video frames",
                          f"watch a folder of its inputs (kind: folder), or give a video model "
                          f"(`{score_command(head)}` scores this one)")
    if kind == "folder" and (spec.fps is not None or spec.threshold is not None):
        key = "fps" if spec.fps is not None else "threshold"
        raise ConfigError(f"{where}.{key}", "applies to video sources only (stream, webcam, file)")
    if spec.loop and kind != "file":
        raise ConfigError(f"{where}.loop", f"applies to kind file only, not {kind}")
    if spec.glob != "*" and kind != "folder":
        raise ConfigError(f"{where}.glob", f"applies to kind folder only, not {kind}")
    return spec


def _check_kind(spec: SourceSpec, kind: str, where: str, base: Path) -> None:
    """The source fits its kind (a URL for stream, an index or device for webcam, a file, a folder); paths resolved."""
    src = spec.source
    if kind == "stream" and not STREAM_RE.match(src):
        raise ConfigError(f"{where}.source", f"{src!r} is not a stream URL",
                          "use rtsp://, http(s)://, tcp://, udp://, rtmp:// or srt://; or set kind")
    if kind == "webcam" and not (src.isdigit() or src.startswith("/dev/video")):
        raise ConfigError(f"{where}.source", f"{src!r} is not a webcam", "use an index (0, 1, ...) or /dev/videoN")
    if kind in ("file", "folder"):
        if STREAM_RE.match(src):
            raise ConfigError(f"{where}.kind", f"{kind} does not fit the URL {src!r}", "use kind: stream")
        spec.source = _resolve(src, base)
        p = Path(spec.source)
        if kind == "file" and not p.is_file():
            what = "a folder" if p.is_dir() else "not found"
            raise ConfigError(f"{where}.source", f"{p}: {what}; kind file needs a video file",
                              "use kind: folder to watch a folder" if p.is_dir() else "check the path")
        if kind == "folder" and not p.is_dir():
            raise ConfigError(f"{where}.source", f"{p}: {'a file' if p.exists() else 'not found'}; kind folder "
                                                 "needs an existing folder", "create the folder first")


def build_config(doc: Any, base: Path, *, db: str | None = None, where: str = "config") -> WatchConfig:
    """A parsed config document -> WatchConfig (checked); `db` (--db) overrides `db:`; paths relative to `base`."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a mapping with `sources:`, got {type(doc).__name__}",
                         "see docs/live.md for the format")
    for key in doc:
        if key not in TOP_KEYS:
            raise ConfigError(str(key), f"unknown key (known: {', '.join(TOP_KEYS)})", f"fix it in {where}")
    sources = doc.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ConfigError("sources", "missing or empty: list at least one source", f"fix it in {where}")
    for key in ("db", "out"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise ConfigError(key, f"expected a string, got {doc[key]!r}", f"fix it in {where}")
    out = _resolve(doc.get("out") or "oddeye-live", base)
    if db is not None:  # --db: from the current folder
        db = db if "://" in db else str(Path(db).expanduser().resolve())
    elif doc.get("db"):
        db = doc["db"] if "://" in doc["db"] else _resolve(doc["db"], base)
    else:
        db = str(Path(out) / "store.db")
    specs: list[SourceSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(sources):
        try:
            spec = check_source(entry, i, base)
        except ConfigError as e:
            raise ConfigError(e.field, e.detail, e.hint or f"fix it in {where}") from None
        if spec.name in seen:
            raise ConfigError(f"{_where(i, entry)}.name",
                              f"{spec.name!r} is also the name of sources[{seen[spec.name]}]",
                              "give every source its own name")
        seen[spec.name] = i
        spec.out = str(Path(out) / spec.name)
        specs.append(spec)
    return WatchConfig(db=db, out=out, sources=specs)


def load_config(path: str | Path, *, db: str | None = None) -> WatchConfig:
    """Read and check a watch config YAML file; errors name the file, the source and the key."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"watch config not found: {p}", "pass a YAML file with `sources:` (see docs/live.md)")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise InputError(f"{p} is not valid YAML ({yaml_problem(e)})", "fix the indentation or quoting there") from None
    except UnicodeDecodeError:
        raise InputError(f"{p} is not a text file") from None
    return build_config(doc, p.resolve().parent, db=db, where=str(p))


def one_source(model: str, source: str, *, name: str | None = None, kind: str | None = None, loop: bool = False,
               glob: str | None = None, db: str | None = None, out: str | None = None,
               **settings: Any) -> WatchConfig:
    """The config of `oddeye watch --model DIR --source SRC`: one source, paths from the current folder."""
    entry: dict[str, Any] = {"name": name or _default_name(source), "model": model, "source": source}
    entry.update({k: v for k, v in dict(kind=kind, glob=glob, **settings).items() if v is not None})
    if loop:
        entry["loop"] = True
    top = {"sources": [entry], **({"out": out} if out else {})}
    try:
        return build_config(top, Path.cwd(), db=db, where="the command line")
    except ConfigError as e:  # "sources[0] (x).model" -> "--model"
        key = e.field.rsplit(".", 1)[-1].replace("_", "-")
        raise ConfigError(f"--{key}", e.detail, e.hint if e.hint != "fix it in the command line" else None) from None


def _default_name(source: str) -> str:
    """A source name made from a URL, index or path: 'cam0', 'clip.mp4', '10.0.0.5-554-stream1'."""
    if source.isdigit():
        return f"cam{source}"
    text = STREAM_RE.sub("", source) if STREAM_RE.match(source) else Path(source.rstrip("/")).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:64]
    return name or "source"
