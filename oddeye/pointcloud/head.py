"""PointCloudHead: FPFH (optionally adapted) memory bank in PatchIndex, kNN point scores; surface field optional."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Self

import numpy as np

from oddeye.core.config import n_threads
from oddeye.core.errors import EmptyDataError, InputError, ModelError
from oddeye.core.head import RunContext, context, read_manifest, write_manifest
from oddeye.core.types import AnomalyMap, Event, Result, Score
from oddeye.pointcloud.adapt import Adapter, train_adapter
from oddeye.pointcloud.config import BEFORE_OPTION, LEGACY_CONFIG_FILE, PointCloudConfig
from oddeye.pointcloud.features import FeatureConfig, auto_voxel_size, raw_features
from oddeye.pointcloud.field import SurfaceField, pool_mean
from oddeye.pointcloud.io import Cloud, finish_cloud, load_cloud
from oddeye.pointcloud.preprocess import extent, preprocess

NAME = "pointcloud"
FORMAT = 3  # 3: settings in the manifest's "config" (2: in config.json, which load() still reads)
MIN_POINTS = 10  # fewer points leave no neighbourhood for normals and FPFH: the score would be noise


@dataclass
class CloudScores:
    """Scores of one cloud: object score, per-point scores (N,), per-voxel scores (M,), voxel centres (M, 3)."""

    score: float
    points: np.ndarray
    voxels: np.ndarray
    voxel_xyz: np.ndarray
    hot: np.ndarray  # (3,) xyz of the highest-scoring voxel
    in_band: float | None = None  # with a surface field: the share of points near the training surface


def as_cloud(sample: Any) -> Cloud:
    """A Cloud from a Cloud, a path, or an (N, 3) array."""
    if isinstance(sample, Cloud):
        return sample
    if isinstance(sample, (str, Path)):
        return load_cloud(sample)
    arr = np.asarray(sample)
    return finish_cloud(arr, f"array{tuple(arr.shape)}")


def usable(cloud: Cloud, after: str = "") -> Cloud:
    """`cloud` if it has the MIN_POINTS points a score needs, else an InputError naming its source and the minimum."""
    if len(cloud) >= MIN_POINTS:
        return cloud
    dropped = cloud.meta.get("dropped_nonfinite") or 0
    why = f" ({dropped} NaN/inf points dropped)" if dropped else ""
    raise EmptyDataError(f"{cloud.meta.get('source', cloud.name)}: {len(cloud)} valid points{why}{after}; a cloud "
                         f"needs at least {MIN_POINTS} to be scored", "pass the whole scan of the part")


class PointCloudHead:
    """Memory-bank anomaly head for point clouds (BTF/PatchCore on FPFH, LSFA-style adaptation optional)."""

    name = NAME

    def __init__(self, config: PointCloudConfig | None = None, **overrides: Any) -> None:
        self.config = PointCloudConfig.build(config, **overrides)
        self.fpfh: FeatureConfig | None = None  # set by fit: the voxel size and the FPFH settings
        self.adapter: Adapter | None = None
        self.index = None
        self.surface: SurfaceField | None = None
        self.threshold: float | None = None
        self.fit_info: dict[str, Any] = {}

    # ---- features ------------------------------------------------------------------------------------
    def _clean(self, cloud: Cloud) -> tuple[Cloud, dict[str, Any]]:
        """Apply the configured preprocessing (seeded) and return the kept cloud and its record."""
        c = self.config
        if not (c.outliers or c.plane):
            return cloud, {}
        keep, rec = preprocess(cloud.points, outliers=c.outliers, plane=c.plane, seed=c.seed, source=cloud.name)
        return usable(cloud.subset(keep), " after outlier/plane removal"), rec

    def prepare(self, sample: Any) -> tuple[Cloud, dict[str, Any]]:
        """The cloud of a sample (Cloud, path or (N, 3) array) as scored: read, checked, preprocessed; its record."""
        return self._clean(usable(as_cloud(sample)))

    def embed(self, points: np.ndarray) -> tuple[Any, np.ndarray]:
        """Voxelize + FPFH (+ adapter) of points (N, 3) -> (Voxelized, features (M, D) float32).

        With position_weight w > 0 (clouds registered into one frame), w * xyz / voxel_size is appended, so a
        point is compared with normal shapes found at the same place (w = feature distance per voxel of offset).
        """
        if self.fpfh is None:
            raise ModelError("this PointCloudHead is not fitted", "call fit() or load a model directory")
        vox, f = raw_features(points, self.fpfh)
        z = f
        if self.adapter is not None:
            z = np.concatenate([f, self.adapter(f)], axis=1) if self.config.keep_raw else self.adapter(f)
        w = self.config.position_weight
        if w > 0:
            z = np.concatenate([z, (w / self.fpfh.voxel_size) * vox.points.astype(np.float32)], axis=1)
        return vox, z

    # ---- fit -----------------------------------------------------------------------------------------
    def fit(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Self:
        """Learn normal local geometry from normal clouds (Clouds, paths or (N, 3) arrays).

        ctx.progress: progress bars; ctx.shots: use only the first K clouds.
        """
        from tqdm.auto import tqdm

        from oddeye.retrieval.coreset import greedy_coreset
        from oddeye.retrieval.index import PatchIndex

        ctx = context(ctx)
        t0 = time.perf_counter()
        items = list(samples)[: ctx.shots] if ctx.shots else samples
        clouds = [self.prepare(s)[0] for s in items]
        if not clouds:
            raise EmptyDataError("fit needs at least one normal point cloud", "pass --train DIR or files")
        pts = [c.points.astype(np.float64) for c in clouds]
        c = self.config
        vs = c.voxel_size or auto_voxel_size(pts, c.target_points)
        self.fpfh = FeatureConfig(vs, normal_radius=c.normal_radius, radii=c.radii, max_nn_normal=c.max_nn_normal,
                                  max_nn_fpfh=c.max_nn_fpfh)
        self.adapter = None
        if c.adapt:
            self.adapter = train_adapter(pts, self.fpfh, steps=c.adapt_steps, seed=c.seed, progress=ctx.progress)
        feats = [self.embed(x)[1] for x in tqdm(pts, desc="bank features", disable=not ctx.progress, leave=False)]
        bank = np.concatenate(feats)
        n_bank = min(c.bank_max, len(bank))
        ids = greedy_coreset(bank, count=n_bank, seed=c.seed, progress=False) if n_bank < len(bank) else np.arange(len(bank))
        # a large bank goes into IVF (~80 vectors a list, 4 probed): with the xyz part of the features the lists
        # are places, and on bunny scans the nearest distances equal flat search's (docs/pointcloud.md)
        ivf = {"kind": "ivf", "nlist": len(ids) // 80, "nprobe": 4} if len(ids) > 10000 else {"kind": "flat"}
        self.index = PatchIndex.build(bank[ids], progress=False, **ivf)
        self.surface = SurfaceField.fit(pts, c.surface_voxel * vs) if c.surface_weight else None
        # threshold: the highest object score of augmented (resampled, jittered) views of the training clouds
        rng = np.random.default_rng(c.seed + 1)
        calib = []
        for x in pts:
            sel = rng.random(len(x)) < 0.9
            calib.append(self.score_points(x[sel] + rng.normal(scale=0.02 * vs, size=x[sel].shape)).score)
        self.threshold = float(max(calib))
        self.fit_info = {"n_clouds": len(clouds), "n_bank_all": int(len(bank)), "n_bank": int(len(ids)),
                         "extent": float(np.median([extent(x) for x in pts])),
                         "voxel_size": vs, "fit_s": round(time.perf_counter() - t0, 2), "calibration_scores": calib,
                         "adapter": self.adapter.info if self.adapter else None}
        return self

    # ---- score ---------------------------------------------------------------------------------------
    def score_points(self, points: np.ndarray) -> CloudScores:
        """Score one cloud (N, 3): kNN distance per voxel, smoothed over spatial neighbours, mapped to points.

        With surface_weight w > 0 (registered clouds, field.py): point score = its voxel's score + w * |its signed
        surface deviation (fine voxels) pooled over cells of `surface_pool` fine voxels, less the mean over cells of
        `surface_region` fine voxels|; object score = the highest pooled
        w * deviation among cells of 3 points or more (a dent of a few mm is a handful of cells: a top-k mean drowns it).
        With hole_weight h > 0: + h * the area of the largest hole (field.holes) to both; for points, that of the
        largest hole within `hole_reach` cells (1.5 fine voxels each), so a hole's rim carries its score; with
        `hole_shape` each hole's area is divided by its elongation (a band of missing cells is a scanner's gap).
        With the surface field the voxel score enters the point map x `feature_weight`, and a point is compared only
        with bank surface whose normal makes |cosine| > `surface_agree` with its voxel's normal.
        """
        from oddeye.retrieval.index import PatchIndex

        if self.index is None:
            raise ModelError("this PointCloudHead is not fitted", "call fit() or load a model directory")
        pts = np.asarray(points, dtype=np.float64)
        vox, z = self.embed(pts)
        if self.surface is not None and n_threads() > 1:
            # the bank search (FAISS, which lets go of the GIL) runs beside the surface terms (numpy)
            with ThreadPoolExecutor(1) as pool:
                knn = pool.submit(self.index.search, z, self.config.k)
                terms = self._surface_terms(pts, vox)
                dist = knn.result()[0]
        else:
            dist = self.index.search(z, k=self.config.k)[0]
            terms = self._surface_terms(pts, vox) if self.surface is not None else None
        v = dist.mean(axis=1)
        m = len(v)
        sk = min(self.config.smooth_k, m)
        if sk > 1 and self.surface is not None:  # pooled over cells of 2 voxels (two grids): no search
            v = pool_mean(vox.points, v, 2.0 * self.fpfh.voxel_size)[0]
        elif sk > 1:
            xyz = vox.points.astype(np.float32)
            _, nb = PatchIndex.build(xyz, kind="flat", progress=False).search(xyz, k=sk)
            v = v[nb].mean(axis=1)
        pv = v[vox.inverse]
        if terms is None:
            top = np.sort(v)[-min(self.config.topk, m):]
            return CloudScores(float(top.mean()), pv.astype(np.float32), v.astype(np.float32), vox.points,
                               vox.points[int(np.argmax(v))])
        smap, sm, cnt, hole, in_band = terms
        # beside the surface terms the features' kNN score counts `feature_weight`
        pv = self.config.feature_weight * pv + smap
        ok = cnt >= 3 if (cnt >= 3).any() else np.ones(len(pv), dtype=bool)
        # object score from the surface term alone: on held-out bunny scans the features' outliers (view-dependent
        # sampling, scan borders) only added noise to the clean clouds' maxima (validation splits, docs)
        best = int(np.flatnonzero(ok)[np.argmax(sm[ok])])
        v = np.full(m, -np.inf)
        np.maximum.at(v, vox.inverse, pv)
        return CloudScores(float(sm[best]) + hole, pv.astype(np.float32), v.astype(np.float32), vox.points,
                           pts[best], in_band)

    def _surface_terms(self, pts: np.ndarray, vox: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """Surface-field terms of points (N, 3) with their FPFH voxels: map (N,) = surface_weight x |pooled
        deviation| over the map scales + hole_weight x the nearby hole's area, the deviation at 1 x surface_pool
        (N,) for the object score, pool counts (N,), hole_weight x the largest hole area, and the share of points
        inside the field's band."""
        c, fine = self.config, self.surface.fine
        agree = c.surface_agree
        dev, ids = self.surface.deviation(pts, signed=True, single=c.surface_single,
                                          normals=vox.normals[vox.inverse] if agree > 0 else None, agree=agree)
        pool = c.surface_pool * fine
        sm, cnt = pool_mean(pts, dev, pool)
        region = c.surface_region
        base = pool_mean(pts, sm, region * fine)[0] if region > 0 else 0.0  # a broad offset is not a defect
        sw = c.surface_weight
        # map: mean over pooling at 1, 1.5 and 2 x surface_pool (a defect's rim gets its share); object: 1 x
        smap = sw * np.mean([np.abs(pool_mean(pts, dev, f * pool)[0] - base) if f > 1 else np.abs(sm - base)
                             for f in c.surface_map_scales], axis=0)
        hw = c.hole_weight
        holes, hole = (self.surface.holes(pts, ids, reach=c.hole_reach, by_shape=c.hole_shape)
                       if hw > 0 else (0.0, 0.0))
        return smap + hw * holes, sw * np.abs(sm - base), cnt, hw * hole, float((ids[:, 0] >= 0).mean())

    def score(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Result:
        """Score clouds -> Result: one Score per cloud with a 'points' map (N,), an Event where above threshold.

        ctx.out: a coloured PLY and PNG views per cloud under out/clouds (Score.artefacts 'ply', 'png');
        ctx.skip_bad: a cloud that cannot be read or has too few points is recorded (Result.add_error), the rest
        scored; ctx.keep_maps False: no point maps in the Result; ctx.progress: a progress bar.
        """
        from tqdm.auto import tqdm

        ctx = context(ctx)
        res = Result(head=NAME, threshold=self.threshold, meta={"config": self.config.to_dict()})
        for s in tqdm(list(samples), desc="score clouds", disable=not ctx.progress, leave=False):
            try:
                cloud, rec = self.prepare(s)
            except InputError as e:
                if not ctx.skip_bad:
                    raise
                path = s if isinstance(s, (str, Path)) else None
                res.add_error(Path(s).stem if path else str(getattr(s, "name", "cloud")), e.message, path)
                continue
            sc, cs = self._score_cloud(cloud, rec, ctx)
            res.scores.append(sc)
            if self.threshold is not None and cs.score > self.threshold:
                res.events.append(Event(sc.sample_id, cs.score, reason=sc.reason, meta={"hot_xyz": cs.hot.tolist()}))
        return res

    def _score_cloud(self, cloud: Cloud, rec: dict[str, Any], ctx: RunContext) -> tuple[Score, CloudScores]:
        """The Score and scores of one prepared cloud, with its review files under ctx.out/clouds when ctx.out is set."""
        t = time.perf_counter()
        cs = self.score_points(cloud.points)
        dt = time.perf_counter() - t
        sid = cloud.name
        label = None if cloud.labels is None else int(cloud.labels.max() > 0)
        hot = ", ".join(f"{c:.4g}" for c in cs.hot)
        reason = f"most unusual local shape near ({hot}) {cloud.meta.get('units', '')}".rstrip()
        maps = {} if ctx.keep_maps is False else {"points": AnomalyMap("point", cs.points)}
        sc = Score(sid, cs.score, label, maps=maps, reason=reason,
                   meta={"n_points": len(cloud), "n_voxels": len(cs.voxels), "score_s": round(dt, 4),
                         "source": cloud.meta.get("source"), "dropped_nonfinite": cloud.meta.get("dropped_nonfinite"),
                         "preprocess": rec, "in_band": cs.in_band, **self._check_frame(cloud, cs)})
        if ctx.out is not None:
            from oddeye.pointcloud.render import write_review

            sc.artefacts = write_review(ctx.out / "clouds", sid, cloud.points, cs.points,
                                        title=f"{sid}: score {cs.score:.3g}", labels=cloud.labels)
        return sc, cs

    def _check_frame(self, cloud: Cloud, cs: CloudScores) -> dict[str, float]:
        """Warn where a cloud cannot be compared with the training clouds: another size (units?) or, with a
        surface field, mostly away from the training surface (not registered?); the ratio for Score.meta."""
        import warnings

        ref = self.fit_info.get("extent")
        ratio = extent(cloud.points) / ref if ref else 1.0
        if not 0.25 <= ratio <= 4.0:
            warnings.warn(f"{cloud.name}: {ratio:.3g} x the size of the training clouds: other units (mm vs m)? "
                          "Scores compare local shape at the training scale; convert the cloud first", stacklevel=4)
        if cs.in_band is not None and cs.in_band < 0.5:
            warnings.warn(f"{cloud.name}: only {100 * cs.in_band:.0f}% of its points lie near the training surface: "
                          "is it registered into the training clouds' frame? The surface terms need that (for "
                          "clouds that are not, refit with `oddeye fit pointcloud --surface-weight 0`)", stacklevel=4)
        return {"size_vs_train": round(float(ratio), 4)}

    # ---- persistence ---------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the manifest (config, FPFH settings, threshold), bank index, adapter (safetensors), surface field."""
        if self.index is None or self.fpfh is None:
            raise ModelError("cannot save an unfitted PointCloudHead", "call fit() first")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.index.save(d / "bank")
        if self.adapter is not None:
            self.adapter.save(d)
        if self.surface is not None:
            self.surface.save(d)
        (d / LEGACY_CONFIG_FILE).unlink(missing_ok=True)  # saved over an old model folder: one place for the settings
        write_manifest(d, NAME, FORMAT, config=self.config.to_dict(), features=self.fpfh.to_dict(),
                       threshold=self.threshold, adapted=self.adapter is not None, fit=self.fit_info)
        return d

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> Self:
        """Read a head written by save() (or by an oddeye before the config moved into the manifest); `device` is
        the bank search's ('cpu', 'cuda'; None: a GPU when FAISS has one). Another head's folder is a ModelError."""
        from oddeye.retrieval.index import PatchIndex

        d = Path(directory)
        doc = read_manifest(d, head=NAME, max_version=FORMAT)
        saved = doc if "config" in doc else _legacy_settings(d)
        try:
            settings, features, threshold = saved["config"], saved["features"], saved.get("threshold")
            fpfh = FeatureConfig.from_dict(features)
        except (KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{d}: the model's settings are corrupt ({type(e).__name__}: {e})",
                             "refit with `oddeye fit pointcloud`") from None
        head = cls(PointCloudConfig.from_dict(settings, defaults=BEFORE_OPTION))
        head.fpfh, head.threshold = fpfh, threshold
        head.adapter = Adapter.load(d) if doc.get("adapted") else None
        head.index = PatchIndex.load(d / "bank", device=device or "auto")
        head.surface = SurfaceField.load(d) if head.config.surface_weight else None
        head.fit_info = doc.get("fit", {})
        c = head.config
        want = ((head.adapter.dim_out if head.adapter else 0) + (fpfh.dim if not head.adapter or c.keep_raw else 0)
                + (3 if c.position_weight else 0))
        if head.index.dim != want:
            raise ModelError(f"{d}: bank dimension {head.index.dim} does not match the features",
                             "refit with `oddeye fit pointcloud`")
        return head


def _legacy_settings(directory: Path) -> dict[str, Any]:
    """The settings of a model folder written before they moved into the manifest (format 2: config.json holds
    params, features and threshold), in the manifest's keys."""
    path = directory / LEGACY_CONFIG_FILE
    try:
        conf = json.loads(path.read_text())
        return {"config": conf["params"], "features": conf["features"], "threshold": conf.get("threshold")}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelError(f"{path} is missing or corrupt ({type(e).__name__}: {e})",
                         "refit with `oddeye fit pointcloud`") from None
