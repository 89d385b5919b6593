"""Appearance of tracked objects: each object's crop embedded with the shared backbone, the crops of normal objects
kept in the shared PatchIndex; an object's distance to its nearest normal crop is the rule attribute "appearance".

    app = Appearance(AppearanceConfig(enabled=True))
    bank = app.collector()
    for frame, fo in normal_frames: bank.add(frame, fo)      # fit: every normal object's crop, batched
    app.fit(bank)                                            # held-out distances on the normal objects; the index
    app.measure(frame, fo.objects)                           # score: o.appearance, o.nearest of each object
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from oddeye.core.errors import EmptyDataError, ModelError
from oddeye.core.types import Event
from oddeye.video.rules.config import AppearanceConfig
from oddeye.video.rules.deduction import Verdict
from oddeye.video.rules.perception import FrameObs, ObjectObs

PAD = 0.1  # a box grows by this share of its width / height on each side before it is cropped
EDGE = 1.0  # px: a box this close to the frame's border holds a partly visible object
THUMB = 64  # longer side (px) of the thumbnails kept for the dashboard
JPEG_QUALITY = 85
BATCH = 64  # normal crops embedded together at fit
FOLDS = 4  # normal crops are measured against the other folds' (see fold_of)
INDEX_DIR = "index"
THUMB_DIR = "normal"  # <number in the index>.jpg: the kept normal crops
INFO_FILE = "appearance.json"

Box = tuple[float, float, float, float]


def whole(objects: Sequence[ObjectObs], shape: tuple[int, ...]) -> list[ObjectObs]:
    """The objects wholly in view: a box that touches the border of a frame of `shape` (H, W[, C]) shows part of
    its object, which then looks like no normal one; those get no appearance."""
    h, w = shape[0], shape[1]
    return [o for o in objects if o.box[0] > EDGE and o.box[1] > EDGE and o.box[2] < w - EDGE and o.box[3] < h - EDGE]


def _region(frame: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of `box` (x1, y1, x2, y2) grown by PAD on each side, clipped to the frame (at least 1 x 1)."""
    h, w = frame.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x1 = int(np.clip(np.floor(box[0] - PAD * bw), 0, w - 1))
    y1 = int(np.clip(np.floor(box[1] - PAD * bh), 0, h - 1))
    x2 = int(np.clip(np.ceil(box[2] + PAD * bw), x1 + 1, w))
    y2 = int(np.clip(np.ceil(box[3] + PAD * bh), y1 + 1, h))
    return frame[y1:y2, x1:x2]


def crops(frame: np.ndarray, boxes: Sequence[Box], size: int) -> np.ndarray:
    """The boxes' regions of `frame` (H, W[, 3]) uint8, each resized to a size x size square: (B, size, size[, 3])."""
    out = []
    for box in boxes:
        r = _region(frame, box)
        interp = cv2.INTER_AREA if min(r.shape[:2]) > size else cv2.INTER_LINEAR
        out.append(cv2.resize(r, (size, size), interpolation=interp))
    return np.stack(out) if out else np.zeros((0, size, size, *frame.shape[2:]), np.uint8)


def thumbnail(frame: np.ndarray, box: Box) -> bytes:
    """The box's region of `frame` (H, W[, 3] RGB) as a JPEG, its longer side THUMB px (aspect kept)."""
    r = _region(frame, box)
    f = THUMB / max(r.shape[:2])
    r = cv2.resize(r, (max(1, round(r.shape[1] * f)), max(1, round(r.shape[0] * f))),
                   interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    if r.ndim == 3:
        r = cv2.cvtColor(r, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", r, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode a crop of shape {r.shape}")
    return buf.tobytes()


def fold_of(frames: Sequence[FrameObs], k: int = FOLDS) -> np.ndarray:
    """Fold (N,) of each of `frames` (one per crop): its video (k at most, in turn) when there are several videos, else
    one of k blocks of time. The same people walk through one video, so other videos are the honest comparison."""
    videos = sorted({fo.video for fo in frames})
    if len(videos) >= 2:
        rank = {v: i % min(k, len(videos)) for i, v in enumerate(videos)}
        return np.array([rank[fo.video] for fo in frames], np.int64)
    times = sorted({fo.index for fo in frames})
    rank = {t: i * k // len(times) for i, t in enumerate(times)}
    return np.array([rank[fo.index] for fo in frames], np.int64)


class Collector:
    """The crops of normal objects met while fitting: descriptors (N, D), thumbnails and the objects they came from."""

    def __init__(self, app: Appearance) -> None:
        """Collect for `app` (whose backbone embeds the crops, BATCH at a time)."""
        self.app = app
        self.objects: list[ObjectObs] = []
        self.frames: list[FrameObs] = []  # the frame of each object
        self.thumbs: list[bytes] = []
        self._desc: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []
        self.embed_s = 0.0

    def add(self, frame: np.ndarray, fo: FrameObs) -> None:
        """Keep the crops of the objects of `fo`, perceived on `frame` (H, W[, 3]) uint8."""
        objects = whole(fo.objects, frame.shape)
        if not objects:
            return
        boxes = [o.box for o in objects]
        self._pending += list(crops(frame, boxes, self.app.config.crop))
        self.thumbs += [thumbnail(frame, b) for b in boxes]
        self.objects += objects
        self.frames += [fo] * len(boxes)
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Embed the crops still waiting."""
        if self._pending:
            t0 = time.perf_counter()
            self._desc.append(self.app.embed(np.stack(self._pending)))
            self.embed_s += time.perf_counter() - t0
            self._pending = []

    def descriptors(self) -> np.ndarray:
        """(N, D) float32 descriptors of every collected crop, in the order they were added."""
        self.flush()
        if not self._desc:
            raise EmptyDataError("no moving object wholly in view to learn their appearance from",
                                 "give normal footage with moving objects, or switch appearance off")
        return np.concatenate(self._desc)


class Appearance:
    """Crop embeddings (the shared backbone, pooled) and the PatchIndex of normal crops with their thumbnails."""

    def __init__(self, config: AppearanceConfig, device: str = "cpu") -> None:
        """Settings from `config`; the backbone is built (offline weights) on first use, on `device`."""
        self.config = config
        self.device = device
        self.index: Any = None  # PatchIndex of the kept normal descriptors
        self.info: dict[str, Any] = {}
        self._thumbs: list[bytes] = []
        self._thumb_dir: Path | None = None  # a loaded model reads its thumbnails from here, when asked
        self._extractor: Any = None
        self._carry: dict[int, tuple[float, int]] = {}  # track -> its last (distance, nearest), see measure()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. sent to a Ray worker) without the backbone, which the other side builds on first use."""
        return {**self.__dict__, "_extractor": None, "_carry": {}}

    @property
    def extractor(self) -> Any:
        """The shared backbone's patch-feature extractor at the crop size (float32; ONNX Runtime on a CPU).

        One thread: a frame's few crops are too small a batch to share, and on a busy 2-core machine two threads
        made scoring 3-4x slower (21-32 vs 106-128 frames/s at 360x240). Like any build_extractor, it sets the
        process's torch and OpenCV threads."""
        if self._extractor is None:
            from oddeye.retrieval.features import build_extractor

            self._extractor = build_extractor(self.config.backbone, device=self.device, image_size=self.config.crop,
                                              batch_size=BATCH, bf16=False, threads=1)
        return self._extractor

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Descriptors (B, D) float32 of crops (B, S, S[, 3]) uint8: the global average of their patch features."""
        return self.extractor.extract(images).mean(dim=(2, 3)).numpy().astype(np.float32)

    def collector(self) -> Collector:
        """A Collector of normal crops for fit()."""
        return Collector(self)

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, col: Collector) -> np.ndarray:
        """Build the index of normal crops (a greedy coreset of at most config.bank) from `col`, and set each
        collected object's appearance to its distance to the nearest crop of the other folds (fold_of: other
        videos, or other blocks of time in a single video): what a new normal object will measure. Returns those
        distances (N,)."""
        folds = fold_of(col.frames)
        x = col.descriptors()
        n = len(x)
        ratio = min(1.0, self.config.bank / n)
        held = np.full(n, np.nan, np.float32)
        for f in np.unique(folds):
            others = np.flatnonzero(folds != f)
            if len(others):
                index = self._build(x[others], max(1, round(ratio * len(others))))
                held[folds == f] = index.search(x[folds == f], k=1)[0][:, 0]
        keep = self._keep(x, min(n, self.config.bank))
        self.index = self._build(x[keep], len(keep))
        self._thumbs = [col.thumbs[i] for i in keep]
        self._thumb_dir = None
        for o, d in zip(col.objects, held):
            o.appearance = float(d)
        self.info = {"crops": n, "kept": len(keep), "dim": int(x.shape[1]), "embed_s": round(col.embed_s, 2)}
        return held

    @staticmethod
    def _keep(x: np.ndarray, count: int) -> np.ndarray:
        """Ids of `count` rows of x (N, D) to keep: all, or a greedy k-centre coreset."""
        if count >= len(x):
            return np.arange(len(x))
        from oddeye.retrieval.coreset import greedy_coreset

        return np.sort(greedy_coreset(x, count=count, seed=0))

    def _build(self, x: np.ndarray, count: int) -> Any:
        """A flat PatchIndex of `count` rows of x (N, D) (a coreset when fewer than N)."""
        from oddeye.retrieval.index import PatchIndex

        return PatchIndex.build(x[self._keep(x, count)], kind="flat", metric="l2", device="cpu")

    # -- scoring --------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new video (forget the tracks' last measures)."""
        self._carry = {}

    def measure(self, frame: np.ndarray, objects: Sequence[ObjectObs], index: int = 0) -> None:
        """Set o.appearance (distance to the nearest normal crop) and o.nearest (its number) of the objects wholly
        in view on frame number `index` (H, W[, 3] uint8), embedded in one batch: on every config.every-th frame
        and for new tracks; in between a track keeps its last measure."""
        if self.index is None:
            raise ModelError("the appearance index is not fitted", "fit the rules head with appearance on")
        objects = whole(objects, frame.shape)
        todo = [o for o in objects if index % self.config.every == 0 or o.track not in self._carry]
        if todo:
            dist, ids = self.index.search(self.embed(crops(frame, [o.box for o in todo], self.config.crop)), k=1)
            for o, d, i in zip(todo, dist[:, 0], ids[:, 0]):
                self._carry[o.track] = (float(d), int(i))
        for o in objects:
            o.appearance, o.nearest = self._carry[o.track]
        self._carry = {o.track: self._carry[o.track] for o in objects}

    @staticmethod
    def keep_crop(frame: np.ndarray, verdict: Verdict) -> None:
        """Where the frame's reason is an appearance breach, keep the object's crop as JPEG (for annotate())."""
        b = verdict.breaches[0] if verdict.breaches else None
        if b is not None and b.attribute == "appearance" and b.box is not None:
            b.crop = thumbnail(frame, b.box)

    def normal_thumbnail(self, i: int) -> bytes:
        """JPEG of normal crop number `i` of the index."""
        if self._thumb_dir is not None:
            return (self._thumb_dir / f"{i:05d}.jpg").read_bytes()
        return self._thumbs[i]

    def annotate(self, events: list[Event], verdicts: list[Verdict]) -> None:
        """Add meta["appearance"] to events whose reason (their peak frame's worst breach) is an appearance rule: the
        rule, the distance, the nearest normal crop's number, and both pictures (base64 JPEG: the object's crop and
        its nearest normal one)."""
        by_index = {v.index: v for v in verdicts}
        for ev in events:
            v = by_index.get(ev.meta.get("peak_frame"))
            b = v.breaches[0] if v is not None and v.breaches else None
            if b is None or b.attribute != "appearance" or b.nearest is None or b.nearest < 0:
                continue
            ev.meta["appearance"] = {
                "rule": b.rule, "distance": b.value, "nearest": b.nearest,
                "crop_jpeg": base64.b64encode(b.crop).decode() if b.crop else None,
                "nearest_jpeg": base64.b64encode(self.normal_thumbnail(b.nearest)).decode()}

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the index (index/), the kept crops' thumbnails (normal/00000.jpg, ...) and appearance.json."""
        if self.index is None:
            raise ModelError("the appearance index is not fitted", "fit the rules head with appearance on")
        d = Path(directory)
        self.index.save(d / INDEX_DIR)
        (d / THUMB_DIR).mkdir(parents=True, exist_ok=True)
        for i in range(len(self.index)):
            (d / THUMB_DIR / f"{i:05d}.jpg").write_bytes(self.normal_thumbnail(i))
        (d / INFO_FILE).write_text(json.dumps(self.info, indent=1))
        return d

    @classmethod
    def load(cls, directory: str | Path, config: AppearanceConfig, device: str = "cpu") -> Appearance:
        """Read a folder written by save() (thumbnails are read when an event asks for one)."""
        from oddeye.retrieval.index import PatchIndex

        d = Path(directory)
        app = cls(config, device)
        app.index = PatchIndex.load(d / INDEX_DIR, device="cpu")
        app.info = json.loads((d / INFO_FILE).read_text())
        app._thumb_dir = d / THUMB_DIR
        if not (app._thumb_dir / f"{len(app.index) - 1:05d}.jpg").is_file():
            raise ModelError(f"{app._thumb_dir}: thumbnails of the normal crops are missing",
                             "refit with `oddeye fit video-rules`")
        return app
