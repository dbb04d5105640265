"""``MeshRCNNConfig``: every knob of Mesh R-CNN (Gkioxari, Malik, Johnson, ICCV 2019) and its presets.

Values are those of the official code (facebookresearch/meshrcnn): ``configs/shapenet/*.yaml`` with
``shapenet/config/config.py`` defaults for the ShapeNet-style architectures (``voxmesh``,
``sphereinit``, ``pixel2mesh``), and ``configs/pix3d/meshrcnn_R50_FPN.yaml`` over
``MESH-RCNN-FPN.yaml`` and ``meshrcnn/config/config.py`` for the detector (``rcnn``).

Two frames are used (see ``dl3d.meshrcnn.unit_box``):

- ShapeNet style (no detector): the voxel grid spans the whole image frustum between the depths
  ``z_near`` and ``z_far`` (the official code uses fixed dataset-wide depths too, 0.67 and 0.92);
  cubified meshes are mapped to the camera frame (metres) and refined there; ``vert_align`` samples
  the backbone's feature maps at each vertex projected with K; losses are in the camera frame.
- ``rcnn`` (Pix3D style): voxels and meshes live in each RoI's perspective-normalised unit box;
  ``vert_align`` samples the 14 x 14 RoIAligned features; losses are in the unit box.

Pretrained weights are never downloaded: ``backbone_weights`` is the path of a torchvision
ResNet-50 ImageNet state_dict (ShapeNet style) or of a torchvision Mask R-CNN (COCO) state_dict
(``rcnn``); without it the networks start from random weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from dl3d.config import opt

ARCHS = ("voxmesh", "sphereinit", "pixel2mesh", "rcnn")
BACKBONES = ("resnet50", "small")


@dataclass
class MeshRCNNConfig:
    """Mesh R-CNN: a backbone (or a Mask R-CNN detector), a voxel head, cubify, and a graph-conv mesh refiner."""

    arch: Literal["voxmesh", "sphereinit", "pixel2mesh", "rcnn"] = opt(
        "voxmesh", "voxmesh: voxels -> cubify -> refine (ShapeNet); sphereinit / pixel2mesh: refine an ico-sphere "
                   "(pixel2mesh subdivides between stages); rcnn: torchvision Mask R-CNN + Z, voxel, mesh RoI heads")
    backbone: Literal["resnet50", "small"] = opt(
        "resnet50", "ShapeNet-style image backbone: torchvision ResNet-50 (C2..C5) or a small 4-stage CNN for CPUs")
    backbone_width: int = opt(16, "small backbone: channels of its first stage (stages: w, 2w, 4w, 6w)")
    backbone_stride: int = opt(16, "small backbone: output stride of its last map, the voxel head's input "
                                   "(16; 8 keeps the third stage's resolution)")
    backbone_weights: str | None = opt(
        None, "weights file: torchvision resnet50 state_dict (ShapeNet style) or maskrcnn_resnet50_fpn state_dict "
              "(rcnn, COCO init); none = random init")
    image_size: int = opt(137, "ShapeNet style: images are resized to this square side, pixels (R2N2: 137)")
    min_size: int = opt(800, "rcnn: torchvision's resize, shorter side, pixels")
    max_size: int = opt(1333, "rcnn: torchvision's resize, longer side at most, pixels")
    num_classes: int = opt(9, "rcnn: foreground classes (Pix3D: 9)")

    voxel_size: int = opt(48, "G: voxel grid side (ShapeNet 48, Pix3D 24)")
    voxel_convs: int = opt(4, "3x3 convs of the voxel head (then a stride-2 deconv and a 1x1 predictor)")
    voxel_conv_dim: int = opt(256, "channels of the voxel head convs")
    voxel_pooler: int = opt(12, "rcnn: RoIAlign side of the voxel head's input (G / 2)")
    cubify_threshold: float = opt(0.2, "voxel probability above which a voxel is occupied (cubify)")
    voxel_loss_weight: float = opt(1.0, "weight of the voxel binary cross-entropy (ShapeNet 1, Pix3D 3)")
    voxel_only_iters: int = opt(100, "first steps that refine dummy tetrahedra instead of cubified voxels "
                                     "(the official VOXEL_ONLY_ITERS; 0 = none)")
    voxel_only_mesh_weight: float = opt(
        1.0, "factor of the mesh losses (on the dummy tetrahedra) during the voxel-only steps: 1 as the official "
             "train_net_shapenet.py effectively does (it zeroes only the logged copies, after the total is summed); "
             "0 leaves the refiner untouched until cubified meshes arrive")
    z_near: float = opt(1.5, "ShapeNet style: depth of the voxel grid's near face, metres")
    z_far: float = opt(3.5, "ShapeNet style: depth of the voxel grid's far face, metres")

    mesh_stages: int = opt(3, "refinement stages (no weight sharing; every stage's mesh enters the loss)")
    graph_convs: int = opt(3, "GraphConv layers per stage")
    graph_conv_dim: int = opt(128, "GraphConv width")
    graph_conv_init: Literal["normal", "zero"] = opt("normal", "GraphConv weight init (pytorch3d)")
    mesh_pooler: int = opt(14, "rcnn: RoIAlign side of the mesh head's features")
    ico_sphere_level: int = opt(4, "sphereinit / pixel2mesh: ico-sphere subdivision level of the initial mesh")

    chamfer_weight: float = opt(1.0, "weight of the chamfer distance")
    normal_weight: float = opt(0.0, "weight of the normal distance (ShapeNet 0, Pix3D 0.1)")
    edge_weight: float = opt(0.2, "weight of the edge-length regulariser (ShapeNet 0.2, Pix3D 1)")
    stage_reduction: Literal["mean", "sum"] = opt("mean", "mesh losses over stages: mean (ShapeNet MeshLoss) or "
                                                          "sum (Pix3D mesh_rcnn_loss)")
    num_samples: int = opt(5000, "points sampled from predicted and GT meshes for the training losses")
    gt_coord_thresh: float = opt(0.0, "rcnn: zero the mesh losses of a batch whose GT points exceed this |coord| "
                                      "in the unit box (Pix3D 5; 0 = off)")

    z_fcs: int = opt(2, "rcnn: FC layers of the Z head")
    z_fc_dim: int = opt(1024, "rcnn: width of the Z head's FC layers")
    z_pooler: int = opt(7, "rcnn: RoIAlign side of the Z head's input")
    z_loss_weight: float = opt(1.0, "rcnn: weight of the smooth-L1 loss on log(dz / box height)")
    z_smooth_l1_beta: float = opt(1.0, "rcnn: smooth-L1 beta of the Z loss")
    z_class_agnostic: bool = opt(False, "rcnn: one dz per RoI instead of one per class (official default: per class)")
    roi_batch_size: int = opt(64, "rcnn: sampled RoIs per image for the box head (Pix3D 64)")
    box_score_thresh: float = opt(0.05, "rcnn: detections kept at inference above this score")

    optimizer: Literal["adam", "sgd"] = opt("adam", "ShapeNet: Adam; Pix3D: SGD with momentum 0.9")
    lr: float = opt(1e-4, "base learning rate (ShapeNet Adam 1e-4, Pix3D SGD 0.02)")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(0.0, "weight decay (Pix3D 1e-4)")
    warmup_iters: int = opt(500, "linear warm-up steps of the learning rate")
    warmup_factor: float = opt(0.1, "learning-rate factor at step 0 of the warm-up")
    lr_decay_start: int = opt(0, "step after which the learning rate follows a cosine down to lr_decay_floor x lr")
    lr_decay_steps: int = opt(0, "length of that cosine in steps (held at the floor after); 0 = a constant learning "
                                 "rate after the warm-up (the official ShapeNet schedule)")
    lr_decay_floor: float = opt(0.1, "learning-rate factor at the end of the cosine decay")
    mesh_lr_factor: float = opt(1.0, "the mesh refinement head's learning rate is this times the schedule's (1 = one "
                                     "learning rate for every parameter, as the official code)")
    eval_samples: int = opt(10000, "points sampled per mesh by the evaluation metrics (official: 10k)")
    skip_loss_factor: float = opt(50.0, "skip a batch whose loss exceeds this times the moving average (0 = off)")
    loss_skip_gamma: float = opt(0.9, "decay of the loss moving average")

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {self.arch!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; got {self.backbone!r}")
        for name in ("backbone_width", "image_size", "min_size", "max_size", "num_classes", "voxel_size", "voxel_conv_dim",
                     "voxel_pooler", "mesh_stages", "graph_convs", "graph_conv_dim", "mesh_pooler", "num_samples", "eval_samples",
                     "z_fcs", "z_fc_dim", "z_pooler", "roi_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("voxel_convs", "voxel_only_iters", "warmup_iters", "ico_sphere_level", "lr_decay_start",
                     "lr_decay_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.backbone_stride not in (8, 16):
            raise ValueError(f"backbone_stride must be 8 or 16, got {self.backbone_stride!r}")
        if self.voxel_size % 2:
            raise ValueError(f"voxel_size must be even (the head ends in a stride-2 deconv), got {self.voxel_size}")
        if self.arch == "rcnn" and self.voxel_pooler * 2 != self.voxel_size:
            raise ValueError(f"rcnn: voxel_pooler must be voxel_size / 2 = {self.voxel_size // 2}, "
                             f"got {self.voxel_pooler}")
        if not 0 < self.cubify_threshold < 1:
            raise ValueError(f"cubify_threshold must be in (0, 1), got {self.cubify_threshold}")
        if not 0 < self.z_near < self.z_far:
            raise ValueError(f"need 0 < z_near < z_far (metres), got {self.z_near}, {self.z_far}")
        for name in ("voxel_loss_weight", "voxel_only_mesh_weight", "chamfer_weight", "normal_weight", "edge_weight",
                     "z_loss_weight", "z_smooth_l1_beta", "gt_coord_thresh", "weight_decay", "skip_loss_factor", "box_score_thresh"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.mesh_lr_factor > 0:
            raise ValueError(f"mesh_lr_factor must be > 0, got {self.mesh_lr_factor}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.lr_decay_floor <= 1:
            raise ValueError(f"lr_decay_floor must be in [0, 1], got {self.lr_decay_floor}")
        if not 0 < self.warmup_factor <= 1 or not 0 <= self.loss_skip_gamma < 1:
            raise ValueError(f"need warmup_factor in (0, 1] and loss_skip_gamma in [0, 1), got "
                             f"{self.warmup_factor}, {self.loss_skip_gamma}")
        if self.stage_reduction not in ("mean", "sum"):
            raise ValueError(f"stage_reduction must be mean or sum, got {self.stage_reduction!r}")
        if self.graph_conv_init not in ("normal", "zero"):
            raise ValueError(f"graph_conv_init must be normal or zero, got {self.graph_conv_init!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.backbone_weights is not None and not str(self.backbone_weights).strip():
            raise ValueError("backbone_weights must be a file path or None, got an empty string")

    @property
    def backbone_widths(self) -> tuple[int, int, int, int]:
        """Channels of the small backbone's four stages."""
        w = self.backbone_width
        return (w, 2 * w, 4 * w, 6 * w)

    @property
    def uses_voxels(self) -> bool:
        """True when the architecture predicts voxels and cubifies them (voxmesh, rcnn)."""
        return self.arch in ("voxmesh", "rcnn")

    @property
    def is_detector(self) -> bool:
        return self.arch == "rcnn"

    def replace(self, **changes) -> MeshRCNNConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_SHAPENET = dict(backbone="resnet50", image_size=137, voxel_size=48, voxel_loss_weight=1.0, voxel_only_iters=100,
                 chamfer_weight=1.0, normal_weight=0.0, edge_weight=0.2, stage_reduction="mean", optimizer="adam",
                 lr=1e-4, warmup_iters=500, warmup_factor=0.1)

MESHRCNN_PRESETS: dict[str, MeshRCNNConfig] = {
    # configs/shapenet/voxmesh_R50.yaml: 48^3 voxels, cubify 0.2, 3 x 3 GraphConv x 128, losses 1 / 0 / 0.2.
    "voxmesh": MeshRCNNConfig(arch="voxmesh", **_SHAPENET),
    # configs/shapenet/sphereinit_R50.yaml: the same refiner on a level-4 ico-sphere, no voxel branch.
    "sphereinit": MeshRCNNConfig(arch="sphereinit", ico_sphere_level=4, **{**_SHAPENET, "voxel_only_iters": 0}),
    # configs/shapenet/pixel2mesh_R50.yaml: a level-2 ico-sphere subdivided after each stage but the last.
    "pixel2mesh": MeshRCNNConfig(arch="pixel2mesh", ico_sphere_level=2, **{**_SHAPENET, "voxel_only_iters": 0}),
    # configs/pix3d/meshrcnn_R50_FPN.yaml: Mask R-CNN R50-FPN, class-agnostic 24^3 voxels from 12x12 RoIs
    # (weight 3), meshes from 14x14 RoIs, Z head 2 x 1024 on 7x7, losses 1 / 0.1 / 1 summed over stages,
    # GT_COORD_THRESH 5, SGD 0.02 (momentum 0.9, weight decay 1e-4, 1000 warm-up steps), 64 RoIs per image.
    "rcnn": MeshRCNNConfig(arch="rcnn", voxel_size=24, voxel_pooler=12, voxel_loss_weight=3.0, voxel_only_iters=0,
                           chamfer_weight=1.0, normal_weight=0.1, edge_weight=1.0, stage_reduction="sum",
                           gt_coord_thresh=5.0, num_classes=9, min_size=800, max_size=1333, optimizer="sgd",
                           lr=0.02, weight_decay=1e-4, warmup_iters=1000, warmup_factor=0.1, roi_batch_size=64),
    # Learns on 2 CPU cores in minutes (bench/meshrcnn_training.py: 6500 steps, ~20 idle minutes): 64 px
    # images, a small CNN whose last map keeps stride 8 (the voxel head's input: 8x8 instead of 4x4 raised
    # held-out voxel IoU after 1000 voxel-only steps from 0.46 to 0.59), 24^3 voxels, a narrow refiner,
    # 1000 samples. The first 3000 steps train the voxels alone (with the dummy tetrahedra's mesh losses
    # weighted 0 they are not computed: such a step costs ~1/5 of a full one), then everything; the last
    # 1200 steps decay the learning rate (cosine to 0.1x: held-out F1@0.3 54.1 instead of 44.9 at step 5400,
    # the refiner's gain over its cubified voxels +7.3 instead of -0.2). Normal weight 0.1 (Pix3D's;
    # ShapeNet's is 0): with chamfer and edge terms only the refiner gained ~3 F1@0.3 points over its
    # cubified voxels on 64 px images, less than 4 Laplacian smoothing passes; the normal term flattens
    # cubify's staircases (from the same voxel-only checkpoint, 800 full steps: +9.1 with it, +2.7 without).
    # The refiner learns at 0.3x the schedule's rate: its offsets are metres and F1@0.3 asks for ~3 cm, so
    # Adam's steps at 1e-3 were coarse for it (from the same checkpoint to step 5400, 256 held-out images:
    # F1@0.3 over cubified +8.3 at 1x, +10.8 and +11.4 at 0.3x with two batch orders, +9.2 at 0.1x).
    # 6500 steps (the decay over the last 1200, 5300-6500) instead of 5400 (4200-5400), in about the same
    # time since the CPU GraphConv got faster: from that checkpoint, F1@0.3 60.4 vs cubified 47.7 (+12.8;
    # decaying over the last 1800 instead: +12.6). Ending the decay at 4800 and holding the floor to 5400
    # gave +9.4: the refiner needs the steps at the full rate, not a longer floor.
    "cpu-small": MeshRCNNConfig(arch="voxmesh", backbone="small", backbone_stride=8, image_size=64, voxel_size=24,
                                voxel_conv_dim=64, voxel_convs=2, voxel_only_iters=3000, voxel_only_mesh_weight=0.0,
                                graph_convs=2, graph_conv_dim=64,
                                num_samples=1000, chamfer_weight=1.0, normal_weight=0.1, edge_weight=0.2,
                                stage_reduction="mean", optimizer="adam", lr=1e-3, warmup_iters=20,
                                lr_decay_start=5300, lr_decay_steps=1200, lr_decay_floor=0.1, mesh_lr_factor=0.3),
}
"""Named configs: the paper's architectures and a CPU-sized voxmesh."""
