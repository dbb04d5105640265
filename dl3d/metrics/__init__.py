"""Evaluation metrics (pure functions, no I/O)."""

from dl3d.metrics.pose import acceleration_error, mpjpe, pa_mpjpe, procrustes_align, reprojection_error_px

__all__ = ["acceleration_error", "mpjpe", "pa_mpjpe", "procrustes_align", "reprojection_error_px"]
