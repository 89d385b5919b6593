"""Seeded synthetic defects on scans: the generator lives in oddeye.core.anomalies.points (shared by every
head's --auto); re-exported here for the pointcloud head's callers."""

from oddeye.core.anomalies.points import KINDS, DefectCloud, make_defect

__all__ = ["KINDS", "DefectCloud", "make_defect"]
