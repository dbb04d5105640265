"""Mesh R-CNN (Gkioxari, Malik, Johnson, ICCV 2019): voxels, cubify and graph-conv mesh refinement, as a library.

No I/O in the modules; ``build_meshrcnn`` reads init weights. Detection is torchvision's Mask R-CNN and
every mesh operation is pytorch3d's (cubify, GraphConv, vert_align, sampling, chamfer, edge loss).
"""

from dl3d.meshrcnn.config import MESHRCNN_PRESETS, MeshRCNNConfig
from dl3d.meshrcnn.losses import LossGuard, mesh_losses, voxel_loss
from dl3d.meshrcnn.mesh_head import MeshRefinementHead, MeshRefinementStage
from dl3d.meshrcnn.train_step import build_meshrcnn, guarded_step, make_optimizer, rcnn_losses, voxmesh_losses
from dl3d.meshrcnn.unit_box import camera_to_unit_box, unit_box_to_camera, voxel_targets
from dl3d.meshrcnn.voxel_head import CUBIFY_ALIGN, VoxelHead, cubify_voxels
from dl3d.meshrcnn.z_head import ZHead

__all__ = [
    "CUBIFY_ALIGN", "LossGuard", "MESHRCNN_PRESETS", "MeshRCNNConfig", "MeshRefinementHead", "MeshRefinementStage",
    "VoxelHead", "ZHead", "build_meshrcnn", "camera_to_unit_box", "cubify_voxels", "guarded_step", "make_optimizer",
    "mesh_losses", "rcnn_losses", "unit_box_to_camera", "voxel_loss", "voxel_targets", "voxmesh_losses",
]
