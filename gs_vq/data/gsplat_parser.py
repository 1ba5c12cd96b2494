"""gsplat's own data objects as a gs-vq :class:`Scene`: for forks of ``examples/simple_trainer.py``.

simple_trainer builds ``self.parser`` (``examples/datasets/colmap.py``'s ``Parser``: poses,
intrinsics and image sizes of every view, undistorted) and ``self.trainset`` (its ``Dataset``:
the training split as ``indices`` into the parser's views). :func:`scene_from_gsplat` reads the
training views from them, so the VQ plugin can measure significance and place the position grid
(:class:`gs_vq.plugins.TrainContext` ``scene``) exactly as ``train.py`` does.
"""

from typing import Any, Optional

import numpy as np
import torch

from .cameras import Camera, Scene

__all__ = ["scene_from_gsplat"]


def scene_from_gsplat(parser: Any, trainset: Optional[Any] = None, images: bool = False,
                      white_background: bool = False) -> Scene:
    """The training views of a gsplat ``Parser`` (all views without ``trainset``).

    Args:
        parser: gsplat's ``Parser``: ``camtoworlds`` [V, 4, 4] (OpenCV axes), ``camera_ids``,
            ``Ks_dict`` {camera id: [3, 3] pixels}, ``imsize_dict`` {camera id: (width, height)},
            ``image_names``, ``points`` [P, 3], ``points_rgb`` [P, 3] uint8, ``scene_scale``.
        trainset: gsplat's ``Dataset`` of the training split (its ``indices`` pick the views).
        images: also read each view's image through ``trainset[i]`` (float32 [H, W, 3] in [0, 1]);
            only ``vq.pos_max_drop`` needs them, significance and the grid use poses alone.
        white_background: whether the renders are composited on white (simple_trainer: black).
    """
    indices = list(trainset.indices) if trainset is not None else list(range(len(parser.camtoworlds)))
    cameras = []
    for item, index in enumerate(indices):
        camera_id = parser.camera_ids[index]
        width, height = parser.imsize_dict[camera_id]
        viewmat = np.linalg.inv(np.asarray(parser.camtoworlds[index], dtype=np.float64))  # [4, 4] world-to-camera
        image = trainset[item]["image"].float() / 255.0 if images and trainset is not None else None  # [H, W, 3]
        cameras.append(Camera(name=str(parser.image_names[index]), image=image,
                              viewmat=torch.from_numpy(viewmat).float(),
                              K=torch.as_tensor(np.asarray(parser.Ks_dict[camera_id]), dtype=torch.float32),
                              width=int(width), height=int(height)))
    points = torch.as_tensor(np.asarray(parser.points), dtype=torch.float32)  # [P, 3]
    rgb = torch.as_tensor(np.asarray(parser.points_rgb), dtype=torch.float32) / 255.0  # [P, 3]
    return Scene(train_cameras=cameras, test_cameras=[], points=points, points_rgb=rgb,
                 scene_scale=float(parser.scene_scale), source_path=str(getattr(parser, "data_dir", "")),
                 kind="gsplat", white_background=white_background)
