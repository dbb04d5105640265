"""The heads against the official layer definitions (parameter counts, shapes, initialisation), the
no-gradient cubify boundary, and the loss guard."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch3d.utils import ico_sphere

from dl3d.meshrcnn.config import MESHRCNN_PRESETS, MeshRCNNConfig
from dl3d.meshrcnn.losses import LossGuard, mesh_losses, sample_gt
from dl3d.meshrcnn.mesh_head import MeshRefinementHead, graph_conv, neighbour_sums, unit_box_positions
from dl3d.meshrcnn.voxel_head import VoxelHead
from dl3d.meshrcnn.voxmesh import SmallBackbone
from dl3d.meshrcnn.z_head import ZHead, predicted_dz, z_loss


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_pix3d_heads_have_the_official_parameter_counts():
    """Pix3D (meshrcnn_R50_FPN.yaml) on 256-channel FPN RoI features:
    voxel: 4 x (3*3*256*256 + 256) + (2*2*256*256 + 256) + (256*24 + 24)            = 2,628,888
    mesh:  per stage bottleneck 256*128+128 and offset (128+3)*3+3; GraphConv(in, 128) = 2 (in*128 + 128)
           with in = 131 (stage 0, all layers; later stages' layers 2-3) or 259 (later stages' first layer):
           (32,896 + 396 + 3 * 33,792) + 2 * (32,896 + 396 + 66,560 + 2 * 33,792)  = 469,540
    Z:     (256*7*7*1024 + 1024) + (1024*1024 + 1024) + (1024*9 + 9)               = 13,904,905"""
    assert _count(VoxelHead(256, 24, 4, 256)) == 2_628_888
    assert _count(MeshRefinementHead(256, 3, 3, 128)) == 469_540
    assert _count(ZHead(256, 7, 2, 1024, classes=9)) == 13_904_905


def test_shapenet_heads_have_the_official_parameter_counts():
    """ShapeNet (voxmesh_R50.yaml) on ResNet-50: the voxel head reads C5 (2048 channels), the refiner
    concatenates C2..C5 (3840): voxel 4,718,848 + 3 * 590,080 + 262,400 + 12,336 = 6,763,824;
    mesh (491,648 + 396 + 101,376) + 2 * (491,648 + 396 + 134,144) = 1,845,796."""
    assert _count(VoxelHead(2048, 48, 4, 256, resize_input=True)) == 6_763_824
    assert _count(MeshRefinementHead(3840, 3, 3, 128)) == 1_845_796


def test_voxel_head_shapes_and_init():
    head = VoxelHead(8, 24, 2, 16)
    assert head(torch.randn(3, 8, 12, 12)).shape == (3, 1, 24, 24, 24)
    assert head.predictor.weight.std() < 0.002 and head.predictor.bias.abs().max() == 0
    with pytest.raises(ValueError, match="12x12"):
        head(torch.randn(1, 8, 14, 14))
    resize = VoxelHead(8, 48, 1, 16, resize_input=True)
    assert resize(torch.randn(2, 8, 5, 5)).shape == (2, 1, 48, 48, 48)


def test_untrained_refinement_returns_its_input_and_stages_share_nothing():
    head = MeshRefinementHead(16, 3, 3, 32)
    mesh = ico_sphere(2).extend(2)
    out = head(torch.randn(2, 16, 14, 14), mesh, unit_box_positions)
    assert len(out) == 3
    for m in out:  # zero-initialised offset layer: tanh(0) = 0
        torch.testing.assert_close(m.verts_packed(), mesh.verts_packed())
    assert all(not g.directed for s in head.stages for g in s.gconvs), "GraphConvs are undirected"
    ids = [id(p) for p in head.parameters()]
    assert len(ids) == len(set(ids)) == 3 * (2 + 2 + 3 * 4)
    torch.nn.init.normal_(head.stages[0].vert_offset.weight, std=0.1)
    moved = head(torch.randn(2, 16, 14, 14), mesh, unit_box_positions)[0].verts_packed() - mesh.verts_packed()
    assert 0 < moved.abs().max() <= 1.0, "offsets go through tanh"


def test_cpu_neighbour_sum_equals_pytorch3d_graph_conv_forward_and_backward():
    """The CPU path (sparse adjacency product) against pytorch3d's own GraphConv on a batch of two
    cubified meshes (one with a hole) plus an icosphere: outputs and every gradient to 1e-5."""
    from pytorch3d.ops import GraphConv, cubify
    from pytorch3d.structures import join_meshes_as_batch

    vox = torch.zeros(2, 10, 10, 10)
    vox[0, 2:8, 3:7, 1:9] = 1
    vox[1, 2:8, 2:8, 3:6] = 1
    vox[1, 4:6, 4:6, :] = 0  # a hole through the block: genus 1
    meshes = join_meshes_as_batch([cubify(vox, 0.5), ico_sphere(2)])
    edges = meshes.edges_packed()
    torch.manual_seed(0)
    gconv = GraphConv(7, 5, directed=False)
    x = torch.randn(meshes.verts_packed().shape[0], 7, requires_grad=True)
    ref = gconv(x, edges)
    got = graph_conv(gconv, x, edges, neighbour_sums(edges, x.shape[0]))
    assert torch.allclose(got, ref, atol=1e-5)
    w = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * w).sum(), [x, *gconv.parameters()])
    g_got = torch.autograd.grad((got * w).sum(), [x, *gconv.parameters()])
    for a, b in zip(g_got, g_ref):
        assert torch.allclose(a, b, atol=1e-5)


def test_mesh_losses_reach_the_refiner_but_not_the_voxel_head():
    from dl3d.meshrcnn import MESHRCNN_PRESETS
    from dl3d.meshrcnn.voxmesh import VoxMesh

    cfg = MESHRCNN_PRESETS["cpu-small"].replace(num_samples=300)
    torch.manual_seed(0)
    model = VoxMesh(cfg)
    for stage in model.mesh_head.stages:  # a trained refiner: non-zero offset layers pass gradients back
        torch.nn.init.normal_(stage.vert_offset.weight, std=0.01)
    K = torch.tensor([[[70.0, 0, 32], [0, 70, 32], [0, 0, 1]]])
    out = model(torch.rand(1, 3, 64, 64), K)
    gt = ico_sphere(2)
    gt = gt.update_padded(gt.verts_padded() * 0.4 + torch.tensor([0, 0, 2.5]))
    loss = mesh_losses(out["meshes"], *sample_gt(gt, 300), chamfer_weight=1, normal_weight=0.1, edge_weight=0.2,
                       num_samples=300)["total"]
    loss.backward()
    assert all(p.grad is None for p in model.voxel_head.parameters()), "cubify is not differentiable"
    assert model.mesh_head.stages[-1].vert_offset.weight.grad.abs().sum() > 0
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0, "vert_align carries gradients into the backbone"


def test_z_loss_is_zero_at_the_target_and_dz_inverts_it():
    dz, h = torch.tensor([30.0, 80.0]), torch.tensor([60.0, 40.0])
    assert float(z_loss(torch.log(dz / h), dz, h)) == 0.0
    assert float(z_loss(torch.log(dz / h) + 0.5, dz, h)) == pytest.approx(0.5 * 0.25)
    assert float(z_loss(torch.log(dz / h) + 3.0, dz, h)) == pytest.approx(2.5)
    torch.testing.assert_close(predicted_dz(torch.log(dz / h), h), dz)
    assert float(predicted_dz(torch.tensor([100.0]), torch.tensor([1.0]))) == pytest.approx(1000 / 16, rel=1e-5)
    assert float(z_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0))) == 0.0


def test_loss_guard_skips_spikes_and_non_finite_losses():
    g = LossGuard(factor=50.0, gamma=0.9)
    assert g.check(1.0) and float(g.moving_average) == 1.0
    assert g.check(2.0) and float(g.moving_average) == pytest.approx(1.1)
    assert not g.check(60.0), "60 > 50 x 1.1"
    assert float(g.moving_average) == pytest.approx(1.1), "a skipped loss does not move the average"
    assert not g.check(math.nan) and not g.check(math.inf)
    assert g.check(54.0) and int(g.skipped) == 3
    state = g.state_dict()
    assert set(state) == {"moving_average", "skipped"}, "checkpointed with the model"


def test_small_backbone_output_stride():
    x = torch.randn(2, 3, 64, 64)
    assert [f.shape[-1] for f in SmallBackbone()(x)] == [32, 16, 8, 4]
    assert [f.shape[-1] for f in SmallBackbone(stride=8)(x)] == [32, 16, 8, 8]
    with pytest.raises(ValueError, match="backbone_stride"):
        MeshRCNNConfig(backbone="small", backbone_stride=4)


def test_learning_rate_warms_up_then_decays_on_a_cosine_to_its_floor():
    from dl3d.meshrcnn.train_step import learning_rate

    cfg = MeshRCNNConfig(lr=1e-3, warmup_iters=10, warmup_factor=0.1, lr_decay_start=100, lr_decay_steps=50,
                         lr_decay_floor=0.1)
    assert learning_rate(0, cfg) == pytest.approx(1e-4)
    assert learning_rate(10, cfg) == learning_rate(100, cfg) == 1e-3
    assert learning_rate(125, cfg) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert learning_rate(150, cfg) == learning_rate(400, cfg) == pytest.approx(1e-4)
    assert learning_rate(10**6, cfg.replace(lr_decay_steps=0)) == 1e-3, "no decay by default"


def test_mesh_lr_factor_gives_the_refiner_its_own_learning_rate():
    from dl3d.meshrcnn.train_step import build_meshrcnn, guarded_step, make_optimizer

    cfg = MESHRCNN_PRESETS["cpu-small"].replace(lr=1e-3, warmup_iters=0, lr_decay_steps=0)
    model = build_meshrcnn(cfg)
    assert MeshRCNNConfig().mesh_lr_factor == MESHRCNN_PRESETS["voxmesh"].mesh_lr_factor == 1.0
    assert len(make_optimizer(model, cfg.replace(mesh_lr_factor=1.0)).param_groups) == 1, \
        "one group at factor 1 (the official single learning rate)"
    opt = make_optimizer(model, cfg.replace(mesh_lr_factor=0.25))
    mesh = {id(p) for p in model.mesh_head.parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == mesh
    assert len(opt.param_groups[0]["params"]) + len(mesh) == len(list(model.parameters()))
    loss = sum(p.sum() for p in model.parameters()) * 0.0
    guarded_step(model, opt, {"total": loss}, 5, cfg.replace(mesh_lr_factor=0.25))
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert opt.param_groups[1]["lr"] == pytest.approx(2.5e-4)
    with pytest.raises(ValueError, match="mesh_lr_factor"):
        cfg.replace(mesh_lr_factor=0.0)
