"""gsplat's simple_trainer with gs-vq: the shipped patch is against gsplat 1.5.3, and the plugin
trains a compression level, significance pruning included, fed by simple_trainer's own data
objects and driven in simple_trainer's hook order (on the CPU through gs-vq's rasterizer)."""

import hashlib
import os
import re
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gsplat.strategy import DefaultStrategy

from gs_vq.data import load_scene, scene_from_gsplat
from gs_vq.io.compressed import load_compressed_splats
from gs_vq.plugins import TrainContext
from gs_vq.render import rasterize
from gs_vq.splats import init_splats
from gs_vq.vq import CODES_KEY, VQPlugin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
# sha256 of examples/simple_trainer.py in gsplat's v1.5.3 tag
GSPLAT_153_SIMPLE_TRAINER = "79319e1cd7404e4d1ba0c425634235c39e6054f0643b904a01feea6179462c05"


def test_patch_is_against_gsplat_153_and_the_doc_shows_it(tmp_path):
    """Reversing examples/simple_trainer_vq.diff on the shipped trainer gives gsplat 1.5.3's
    simple_trainer.py byte for byte, and docs/simple_trainer_vq.md shows that same diff."""
    tool = shutil.which("patch")
    if tool is None:
        pytest.skip("needs the patch tool")
    work = tmp_path / "simple_trainer.py"
    shutil.copy(os.path.join(EXAMPLES, "simple_trainer_vq.py"), work)
    diff = os.path.join(EXAMPLES, "simple_trainer_vq.diff")
    subprocess.run([tool, "-R", "-s", str(work), diff], check=True)
    assert hashlib.sha256(work.read_bytes()).hexdigest() == GSPLAT_153_SIMPLE_TRAINER
    with open(os.path.join(ROOT, "docs", "simple_trainer_vq.md")) as f:
        shown = re.search(r"```diff\n(.*?)```", f.read(), re.S).group(1)
    with open(diff) as f:
        assert shown == f.read()


class GsplatParser(SimpleNamespace):
    """The attributes of gsplat's examples/datasets/colmap.py ``Parser`` that a trainer reads."""


class GsplatDataset:
    """gsplat's ``Dataset``: ``indices`` into the parser's views; items as simple_trainer gets them."""

    def __init__(self, parser, indices, images):
        self.parser, self.indices, self._images = parser, np.asarray(indices), images

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, item):
        index = self.indices[item]
        return {"K": torch.from_numpy(self.parser.Ks_dict[self.parser.camera_ids[index]]).float(),
                "camtoworld": torch.from_numpy(self.parser.camtoworlds[index]).float(),
                "image": self._images[index] * 255.0, "image_id": item}


def gsplat_data(scene):
    """The demo scene as gsplat's parser and training set (one camera id per view)."""
    cams = scene.train_cameras
    parser = GsplatParser(
        camtoworlds=np.stack([np.linalg.inv(c.viewmat.double().numpy()) for c in cams]),  # [V, 4, 4]
        camera_ids=list(range(len(cams))), image_names=[c.name for c in cams],
        Ks_dict={i: c.K.numpy().astype(np.float64) for i, c in enumerate(cams)},
        imsize_dict={i: (c.width, c.height) for i, c in enumerate(cams)},
        points=scene.points.numpy(), points_rgb=(scene.points_rgb.numpy() * 255).astype(np.uint8),
        scene_scale=scene.scene_scale / 1.1, data_dir=scene.source_path)
    return parser, GsplatDataset(parser, range(len(cams)), [c.image for c in cams])


def rasterize_splats(vq, splats, camtoworlds, Ks, width, height, sh_degree):
    """simple_trainer's ``rasterize_splats`` as patched by examples/simple_trainer_vq.diff."""
    render = dict(splats)
    if vq is not None:
        render.update(vq.splats_to_render(splats))
    colors = torch.cat([render["sh0"], render["shN"]], 1)  # [N, K, 3]
    return rasterize(render["means"], render["quats"], torch.exp(render["scales"]),
                     torch.sigmoid(render["opacities"]), colors, torch.linalg.inv(camtoworlds), Ks,
                     width, height, sh_degree=sh_degree, packed=False)


def test_default_level_trains_with_pruning_in_simple_trainer_order(tmp_path):
    scene = load_scene(None)
    parser, trainset = gsplat_data(scene)
    keep = torch.randperm(len(scene.points), generator=torch.Generator().manual_seed(0))[:800]
    tensors = init_splats(scene.points[keep], scene.points_rgb[keep], 1, 0.1, 1.0, 0)
    splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in tensors.items()})
    optimizers = {k: torch.optim.Adam([{"params": splats[k], "lr": 1e-3 if k != "opacities" else 5e-2, "name": k}])
                  for k in splats.keys()}
    strategy = DefaultStrategy(refine_start_iter=10, refine_stop_iter=40, refine_every=10, reset_every=10_000,
                               verbose=False)
    strategy.check_sanity(splats, optimizers)
    state = strategy.initialize_state(scene_scale=parser.scene_scale * 1.1)
    max_steps = 100
    vq = VQPlugin.from_dict({"level": "default"})
    vq.initialize(splats, optimizers, TrainContext(total_steps=max_steps, refine_stop=strategy.refine_stop_iter,
                                                  strategy_state=state, scene=scene_from_gsplat(parser, trainset)))
    # the level's steps are fractions of the 60-step window: refresh every step, prune every 6
    assert (vq.vq_every, vq.prune_every, vq.prune_window) == (1, 6, 30)
    counts = {}
    for step in range(max_steps):
        data = trainset[step % len(trainset)]
        camtoworlds, Ks, pixels = data["camtoworld"][None], data["K"][None], data["image"][None] / 255.0
        height, width = pixels.shape[1:3]
        sh_degree = min(step // 10, 1)
        vq.step_pre_forward(step, splats, optimizers)
        renders, alphas, info = rasterize_splats(vq, splats, camtoworlds, Ks, width, height, sh_degree)
        strategy.step_pre_backward(splats, optimizers, state, step, info)
        loss = F.l1_loss(renders, pixels)
        vq_loss = vq.loss(step, splats, None, None)
        if vq_loss is not None:
            loss += vq_loss
        loss.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(splats, optimizers, state, step, info, packed=False)
        vq.step_post_backward(step, splats, optimizers, info)
        counts[step] = len(splats["means"])
        if step == max_steps - 1:
            facts = vq.export(str(tmp_path), splats)
    first = counts[40]  # quantized from step 40; the three rounds prune at 46, 52 and 58
    assert vq.state.reduce_rounds == 3 and vq.state.reduce_from == first
    # 60% in three rounds of the same share: (0.4)^(1/3) of what is left kept each time
    assert counts[46] == pytest.approx(first * 0.4 ** (1 / 3), abs=first * 0.01 + 2)
    assert counts[58] <= round(first * 0.4) + 2 and counts[58] < counts[52] < counts[46]
    assert vq.state.num_sh_dropped > 0 and facts["compression_ratio"] > 1
    loaded = load_compressed_splats(str(tmp_path / "compressed.ply"))
    assert loaded["means"].shape[0] == len(splats["means"])
    with torch.no_grad():
        data = trainset[0]
        mine = rasterize_splats(vq, splats, data["camtoworld"][None], data["K"][None],
                                scene.train_cameras[0].width, scene.train_cameras[0].height, 1)[0]
        file = {k: v for k, v in loaded.items() if k in splats and k != CODES_KEY}
        theirs = rasterize_splats(None, file, data["camtoworld"][None], data["K"][None],
                                  scene.train_cameras[0].width, scene.train_cameras[0].height, 1)[0]
    assert (mine - theirs).abs().max() < 2e-3  # the file renders what training rendered
