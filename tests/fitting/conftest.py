"""Fixtures for the fitting tests: the procedural body model (NOT SMPL) and its fitting kernel."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def body_arrays() -> dict:
    """SMPL-format arrays of dl3d's procedural body model (a stand-in, NOT SMPL)."""
    from dl3d.body import make_procedural_body_model

    return make_procedural_body_model(num_betas=10, seed=0)


@pytest.fixture(scope="session")
def kernel(body_arrays):
    """float32 ``SelectedPointsKernel`` of the procedural body (24 joints + smplx's keypoint vertices)."""
    from dl3d.body.joints_kernel import build_points_kernel

    return build_points_kernel(body_arrays)
