"""Result and friends: what every head returns, what the store keeps and the dashboard shows."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from oddeye.core.errors import InputError, ModelError

MapKind = Literal["pixel", "point", "frame"]
SampleKind = Literal["image", "video", "pointcloud", "patrol_pair", "frame"]
RESULT_VERSION = 1


@dataclass
class Sample:
    """One input a head scores: an image, a video, a point cloud or a reference/query pair."""

    id: str
    kind: SampleKind
    path: str | None = None
    label: int | None = None  # 1 anomalous, 0 normal, None unknown
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnomalyMap:
    """A dense anomaly map: pixels (H, W), points (N,) or frames (T,); higher is more anomalous."""

    kind: MapKind
    values: np.ndarray

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        want = {"pixel": 2, "point": 1, "frame": 1}[self.kind]
        if self.values.ndim != want:
            raise ValueError(f"a {self.kind} map must have {want} dims, got shape {self.values.shape}")


@dataclass
class Event:
    """Something to review: a time range (video, patrol) or a region (image, cloud), with a reason."""

    sample_id: str
    score: float
    start: float | None = None  # seconds
    end: float | None = None
    start_frame: int | None = None
    end_frame: int | None = None  # inclusive
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 in pixels
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Length of the event in seconds, if it has times."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


@dataclass
class Score:
    """The score of one sample, with its optional maps, per-frame series and reason in words."""

    sample_id: str
    score: float
    label: int | None = None
    maps: dict[str, AnomalyMap] = field(default_factory=dict)
    frame_scores: np.ndarray | None = None  # (T,) per-frame scores of a video sample
    frame_times: np.ndarray | None = None  # (T,) seconds of each frame
    frame_indices: np.ndarray | None = None  # (T,) frame numbers of each score
    reason: str = ""
    artefacts: dict[str, str] = field(default_factory=dict)  # name -> file path
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """What a head returns from score(): one Score per sample, events, the threshold used."""

    head: str
    scores: list[Score] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    threshold: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def sample_scores(self) -> np.ndarray:
        """Per-sample scores, shape (S,)."""
        return np.array([s.score for s in self.scores], dtype=np.float64)

    def labels(self) -> np.ndarray | None:
        """Per-sample labels, shape (S,), or None if any is unknown."""
        labels = [s.label for s in self.scores]
        if any(x is None for x in labels):
            return None
        return np.array(labels, dtype=np.int64)

    def get(self, sample_id: str) -> Score:
        """The Score of `sample_id`; KeyError naming it if absent."""
        for s in self.scores:
            if s.sample_id == sample_id:
                return s
        raise KeyError(f"no sample {sample_id!r} in this result")

    def add_error(self, sample_id: str, message: str, path: str | Path | None = None) -> Score:
        """Record that a sample could not be scored (e.g. an unreadable file under --skip-bad): a Score with NaN
        score, `meta["error"]` and the reason "error: ...". Returns it."""
        meta: dict[str, Any] = {"error": str(message)}
        if path is not None:
            meta["path"] = str(Path(path).expanduser().resolve())
        sc = Score(sample_id=str(sample_id), score=float("nan"), reason=f"error: {message}", meta=meta)
        self.scores.append(sc)
        return sc

    def errors(self) -> list[Score]:
        """The samples recorded with add_error()."""
        return [s for s in self.scores if "error" in s.meta]

    def extend(self, other: Result) -> None:
        """Append the scores and events of `other` (same head) to this result."""
        if other.head != self.head:
            raise ValueError(f"cannot merge a {other.head} result into a {self.head} result")
        self.scores.extend(other.scores)
        self.events.extend(other.events)

    def save(self, directory: str | Path) -> Path:
        """Write result.json (+ arrays.npz for maps and series) under `directory`; return the json path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        scores = []
        for i, s in enumerate(self.scores):
            d = {k: v for k, v in asdict(s).items() if k not in ("maps", "frame_scores", "frame_times", "frame_indices")}
            d["maps"] = {}
            for name, m in s.maps.items():
                key = f"s{i}_map_{name}"
                arrays[key] = m.values
                d["maps"][name] = {"kind": m.kind, "array": key}
            for name in ("frame_scores", "frame_times", "frame_indices"):
                v = getattr(s, name)
                if v is not None:
                    arrays[f"s{i}_{name}"] = np.asarray(v)
                    d[name] = f"s{i}_{name}"
            scores.append(d)
        doc = {
            "version": RESULT_VERSION,
            "head": self.head,
            "threshold": self.threshold,
            "metrics": self.metrics,
            "meta": self.meta,
            "scores": scores,
            "events": [asdict(e) for e in self.events],
        }
        path = out / "result.json"
        if arrays:
            np.savez_compressed(out / "arrays.npz", **arrays)
        path.write_text(json.dumps(_jsonable(doc), indent=1))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Result:
        """Read a Result written by save(); a missing or foreign file is a clear error."""
        d = Path(directory)
        path = d / "result.json" if d.is_dir() else d
        if not path.is_file():
            raise InputError(f"no result.json in {d}", "point at a folder written by `oddeye score` or `oddeye eval`")
        try:
            doc = json.loads(path.read_text())
            version = doc["version"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelError(f"{path} is not an oddeye result ({e})") from None
        if version > RESULT_VERSION:
            raise ModelError(f"{path} was written by a newer oddeye (result version {version})", "upgrade oddeye")
        npz_path = path.parent / "arrays.npz"
        arrays = dict(np.load(npz_path)) if npz_path.exists() else {}
        scores = []
        for sd in doc["scores"]:
            maps = {n: AnomalyMap(m["kind"], arrays[m["array"]]) for n, m in sd.pop("maps").items()}
            series = {n: arrays[sd.pop(n)] for n in ("frame_scores", "frame_times", "frame_indices") if sd.get(n)}
            for n in ("frame_scores", "frame_times", "frame_indices"):
                sd.pop(n, None)
            if sd.get("score") is None:  # NaN was written as null
                sd["score"] = float("nan")
            scores.append(Score(maps=maps, **series, **sd))
        events = []
        for ed in doc["events"]:
            if ed.get("box") is not None:
                ed["box"] = tuple(ed["box"])
            events.append(Event(**ed))
        return cls(head=doc["head"], scores=scores, events=events, threshold=doc["threshold"],
                   metrics=doc["metrics"], meta=doc["meta"])


def _jsonable(x: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def to_jsonable(x: Any) -> Any:
    """Public form of the JSON conversion used for results and eval lines."""
    return _jsonable(x)


def events_from_scores(
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    sample_id: str,
    times: Sequence[float] | np.ndarray | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    min_length: int = 1,
    merge_gap: int = 0,
    reasons: Sequence[str] | None = None,
) -> list[Event]:
    """Contiguous runs of scores (T,) above `threshold` as Events, merging runs `merge_gap` frames apart."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (T,), got shape {s.shape}")
    idx = np.asarray(frame_indices) if frame_indices is not None else np.arange(len(s))
    above = s > threshold
    runs: list[list[int]] = []
    i = 0
    while i < len(s):
        if above[i]:
            j = i
            while j + 1 < len(s) and above[j + 1]:
                j += 1
            if runs and i - runs[-1][1] - 1 <= merge_gap:
                runs[-1][1] = j
            else:
                runs.append([i, j])
            i = j + 1
        else:
            i += 1
    events = []
    for a, b in runs:
        if b - a + 1 < min_length:
            continue
        peak = a + int(np.argmax(s[a : b + 1]))
        ev = Event(sample_id=sample_id, score=float(s[peak]), start_frame=int(idx[a]), end_frame=int(idx[b]),
                   meta={"peak_frame": int(idx[peak])})
        if times is not None:
            ev.start, ev.end = float(times[a]), float(times[b])
        if reasons is not None and reasons[peak]:
            ev.reason = reasons[peak]
        events.append(ev)
    return events
