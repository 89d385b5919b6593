"""Pair each query frame with its reference frame by global descriptor (PatchIndex), optionally within a pose/time window."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.headconfig import HeadConfig, param
from oddeye.patrol.reference import ReferenceRun


@dataclass
class Pairing:
    """The reference frame chosen for one query frame (None = no reference) and how sure the retrieval is."""

    query_index: int
    ref_index: int | None
    similarity: float  # cosine similarity of the best reference frame
    margin: float  # similarity minus that of the best frame away from it (route positions apart)
    candidates: list[int] = field(default_factory=list)
    status: str = "ok"  # "ok", "low_similarity" (to verify by alignment) or "no_reference"
    reason: str = ""


@dataclass
class PairingParams(HeadConfig):
    """Knobs of the pairing step."""

    k: int = param(64, ge=1, doc="reference candidates fetched per query frame")
    min_similarity: float = param(0.5, ge=-1, le=1, doc="of reference-centred descriptors; below: 'no reference' "
                                                          "for this frame unless alignment confirms the match")
    separation: int = param(3, ge=0, doc="frames; the margin is to the best candidate at least this far from the winner")
    time_window: float | None = param(None, ge=0, doc="s; only reference frames with |t_ref - t_query - offset| <= "
                                                      "window (None: no window)")
    time_offset: float = param(0.0, doc="s; added to the query time before the time window")
    pose_radius: float | None = param(None, ge=0, doc="pose units; only reference frames within this distance "
                                                      "(x, y[, z]); needs poses for both runs")
    continuity: int = param(5, ge=0, doc="frames; prefer a candidate this close to the previous pairing ...")
    continuity_slack: float = param(0.2, ge=0, doc="... if its similarity is at most this much below the best")


def pair_frames(ref: ReferenceRun, descriptors: np.ndarray, params: PairingParams | None = None,
                query_indices: np.ndarray | None = None, times: np.ndarray | None = None,
                poses: np.ndarray | None = None, previous: int | None = None) -> list[Pairing]:
    """Best reference frame per raw query descriptor (M, D) via ref.index (cosine); times (M,), poses (M, P) constrain it.

    `previous` is the reference frame paired with the frame before this batch (route order as a prior).
    """
    p = params or PairingParams()
    raw = np.asarray(descriptors, np.float32)
    if raw.ndim != 2 or raw.shape[1] != len(ref.center):
        raise InputError(f"query descriptors must be (M, {len(ref.center)}), got shape {raw.shape}",
                         "use the backbone the reference was fitted with")
    q = ref.describe(raw)
    m = len(q)
    qidx = np.arange(m) if query_indices is None else np.asarray(query_indices)
    if p.time_window is not None and times is None:
        raise InputError("time_window needs query frame times",
                         "pass frame times, or drop --time-window from `oddeye score patrol`")
    if p.pose_radius is not None and (poses is None or ref.poses is None):
        raise InputError("pose_radius needs poses for both the reference and the query",
                         "pass --poses to both `oddeye fit patrol` and `oddeye score patrol`, "
                         "or drop --pose-radius")
    k = min(len(ref), max(p.k, 2) if p.time_window is None and p.pose_radius is None else len(ref))
    dist, ids = ref.index.search(q, k=k)
    sims = 1.0 - dist
    out = []
    for j in range(m):
        cand, s = ids[j], sims[j]
        keep = cand >= 0
        if p.time_window is not None:
            keep &= np.abs(ref.times[np.clip(cand, 0, None)] - times[j] - p.time_offset) <= p.time_window
        if p.pose_radius is not None:
            dxy = ref.poses[np.clip(cand, 0, None)] - poses[j]
            n_pos = min(3, dxy.shape[1])  # x, y[, z]; yaw is not a distance
            keep &= np.linalg.norm(np.nan_to_num(dxy[:, :n_pos], nan=np.inf), axis=1) <= p.pose_radius
        cand, s = cand[keep], s[keep]
        if len(cand) == 0:
            out.append(Pairing(int(qidx[j]), None, float("nan"), float("nan"), [], "no_reference",
                               "no reference frame inside the pose/time window"))
            continue
        pick = 0
        if previous is not None and p.continuity > 0:  # a route is driven in order: stay near the last pairing
            close = np.abs(cand - previous) <= p.continuity
            if s[0] < p.min_similarity:  # unsure anyway: take the route position, alignment will verify it
                near = np.flatnonzero(close)
            else:
                near = np.flatnonzero(close & (s >= s[0] - p.continuity_slack))
            pick = int(near[0]) if near.size else 0
        best, top = int(cand[pick]), float(s[pick])
        far = np.abs(cand - best) >= p.separation
        second = float(s[far][0]) if far.any() else float("nan")
        margin = top - second if far.any() else float("nan")
        pr = Pairing(int(qidx[j]), best, top, margin, [int(c) for c in cand[:5]])
        if top < p.min_similarity:  # the caller may still verify it by alignment (see PatrolHead)
            pr.status = "low_similarity"
            pr.reason = (f"no reference: best reference frame {best} is only {top:.3f} similar "
                         f"(< {p.min_similarity}) and did not align; this place may not be on the reference route")
        out.append(pr)
        previous = best
    return out
