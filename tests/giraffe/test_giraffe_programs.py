"""The render programs: seeded, each varying what its name says within the official control values."""

from __future__ import annotations

import json

import pytest
import torch

from dl3d.giraffe import GIRAFFE_PRESETS
from dl3d.giraffe.programs import PROGRAMS, program_scene, slerp

SMALL = GIRAFFE_PRESETS["cpu-small"]


def test_a_seed_gives_the_same_scene_and_another_seed_another():
    a, b = program_scene(SMALL, "interpolate_app", 4, 7), program_scene(SMALL, "interpolate_app", 4, 7)
    c = program_scene(SMALL, "interpolate_app", 4, 8)
    assert all(torch.equal(x, y) for x, y in zip(a["latents"], b["latents"]))
    assert not torch.equal(a["latents"][0], c["latents"][0])
    assert all(torch.equal(x, y) for x, y in zip(a["boxes"], b["boxes"]))


def test_each_program_varies_its_control():
    f = 5
    rot = program_scene(GIRAFFE_PRESETS["cars64"], "object_rotation", f, 0)
    angles = torch.atan2(rot["boxes"][2][:, 0, 1, 0], rot["boxes"][2][:, 0, 0, 0])
    assert [c["rotation"] for c in rot["controls"]] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert float(angles[1]) == pytest.approx(torch.pi / 2, abs=1e-5), "cars rotate a full turn: 0.25 -> 90 degrees"
    hor = program_scene(SMALL, "object_translation_horizontal", f, 0)
    y = hor["boxes"][1][:, -1, 1]
    assert torch.allclose(y, torch.linspace(-0.713, 0.713, f)) and torch.equal(hor["boxes"][1][:, 0], hor["boxes"][1][:1, 0].expand(f, 3))
    depth = program_scene(SMALL, "object_translation_depth", f, 0)
    assert torch.allclose(depth["boxes"][1][:, -1, 0], torch.linspace(-0.713, 0.713, f))
    elev = program_scene(GIRAFFE_PRESETS["chairs64"], "camera_elevation", f, 0)
    assert bool((elev["camera"][:, 2, 3].diff() < 0).all()), "v grows: the camera goes down towards the horizon"
    turn = program_scene(SMALL, "camera_rotation", f, 0)
    assert torch.allclose(turn["camera"][0, :3, 3], turn["camera"][-1, :3, 3], atol=1e-5), "a full turn"
    add = program_scene(SMALL, "add_objects", 12, 0)
    counts = add["existence"].sum(1).tolist()
    assert counts[0] == 1 and counts[-1] == 6 and counts == sorted(counts)
    bg = program_scene(SMALL, "background_only", f, 0)
    assert bg["only_background"] and not torch.equal(bg["latents"][3][0], bg["latents"][3][-1])


def test_slerp_ends_at_both_codes_and_keeps_the_norm_of_equal_norm_codes():
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    z2 = z2 / z2.norm(dim=-1, keepdim=True) * z1.norm(dim=-1, keepdim=True)
    path = slerp(z1, z2, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], z1, atol=1e-5) and torch.allclose(path[-1], z2, atol=1e-5)
    assert torch.allclose(path.norm(dim=-1), z1.norm(dim=-1).expand(5, 2), atol=1e-4)


def test_explicit_controls_are_applied_and_checked():
    controls = json.dumps([{"u": 0.0, "t": [[0, 0, 0], [1, 1, 0]]}, {"r": [0.5, 0.5]}])
    scene = program_scene(SMALL, "explicit", 2, 0, controls)
    assert torch.allclose(scene["boxes"][1][0, 1], torch.tensor([0.713, 0.713, 0.1665]))
    with pytest.raises(ValueError, match="needs per-frame controls"):
        program_scene(SMALL, "explicit", 2, 0)
    with pytest.raises(ValueError, match="JSON list of 3 objects"):
        program_scene(SMALL, "explicit", 3, 0, controls)
    with pytest.raises(ValueError, match="unknown keys \\['zoom'\\]"):
        program_scene(SMALL, "explicit", 1, 0, json.dumps([{"zoom": 2}]))
    with pytest.raises(ValueError, match="s and t as 2 x 3 lists"):
        program_scene(SMALL, "explicit", 1, 0, json.dumps([{"t": [1, 2]}]))
    with pytest.raises(ValueError, match="unknown render program 'spin'"):
        program_scene(SMALL, "spin", 1, 0)
    assert len(PROGRAMS) == 13
