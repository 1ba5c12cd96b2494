"""The viewer's pieces without a browser: model facts, the render function and its modes, the
selection hook, camera conventions, and view.py's one-line errors (missing model, port in use)."""

import json
import os
import socket

import numpy as np
import pytest
import torch

from gs_vq.io import save_ply
from gs_vq.render.synthetic import look_at_viewmat
from gs_vq.viewer import ViewOptions, ViewRenderer, camera_matrices, facts_markdown, load_viewer_model
from gs_vq.viewer.app import look_at_c2w, start_pose
from test_semantic_lib import BagOfWordsEncoder
from viewer_scenes import blob_splats, front_pose, semantic_model

@pytest.fixture(scope="module")
def sem_model(tmp_path_factory):
    """A semantic model whose head was built with the bag-of-words stand-in encoder (registered in
    the encoder cache, so queries in this process use it)."""
    from gs_vq.semantics import encoders

    enc = BagOfWordsEncoder()
    key = ("minilm", enc.spec.model, None, "cpu")
    encoders._CACHE[key] = enc
    folder = semantic_model(tmp_path_factory.mktemp("sem") / "model", encoder=enc)
    (folder / "results.json").write_text(json.dumps({"psnr": 27.5, "split": "test",
                                                     "rendered_ply": str(folder / "point_cloud.ply")}))
    yield folder
    encoders._CACHE.pop(key)


def test_facts_of_a_model_folder(sem_model):
    m = load_viewer_model(str(sem_model))
    size = os.path.getsize(sem_model / "point_cloud.ply")
    assert m.facts["gaussians"] == m.num_gaussians == len(blob_splats()["means"])
    assert m.facts["bits_per_gaussian"] == pytest.approx(8 * size / m.num_gaussians)
    assert m.facts["psnr"] == 27.5 and m.semantic and m.cameras == []
    text = facts_markdown(m.facts)
    assert "27.50 dB" in text and "standard 3DGS ply" in text and f"{m.num_gaussians:,}" in text


def test_look_at_matches_the_scene_convention():
    eye, target = np.array([1.0, -2.0, 3.0]), np.array([0.2, 0.1, -0.3])
    c2w = look_at_c2w(eye, target, np.array([0.0, 1.0, 0.0]))  # synthetic.py: world up +y
    viewmat, K = camera_matrices(c2w, np.deg2rad(60), 80, 60, "cpu")
    ref = look_at_viewmat(torch.tensor(eye, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    torch.testing.assert_close(viewmat[0], ref, atol=1e-5, rtol=1e-5)
    assert K[0, 1, 1] == pytest.approx(30 / np.tan(np.deg2rad(30)), rel=1e-5) and K[0, 0, 2] == 40


def test_rgb_render_and_selection(sem_model):
    m = load_viewer_model(str(sem_model))
    r = ViewRenderer(m)
    c2w, fov = front_pose()
    img = r.render(c2w, fov, 64, 48)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert img.reshape(-1, 3).std(0).max() > 20  # objects on a plane, not one colour
    red = img[..., 0].astype(int) - img[..., 2]
    assert red[:, :24].max() > 100 and red[:, 40:].min() < 0  # red ball left, blue cup right
    # the selection hook: only the red ball's Gaussians
    keep = m.splats["features"][:, 0] > 0.5
    only = r.render(c2w, fov, 64, 48, ViewOptions(keep=keep))
    assert only[:, 40:].max() == 0 and only[:, :24].max() > 100  # black background where the rest was
    from gs_vq.errors import GsVqError

    with pytest.raises(GsVqError, match="selection"):
        r.render(c2w, fov, 64, 48, ViewOptions(keep=keep[:10]))


def test_query_modes_light_up_the_named_object(sem_model):
    m = load_viewer_model(str(sem_model))
    r = ViewRenderer(m)
    c2w, fov = front_pose()
    masks = {}
    for text in ("red ball", "blue cup"):
        img = r.render(c2w, fov, 64, 48, ViewOptions(mode="mask", query=text)).astype(int)
        masks[text] = img[..., 0] - img[..., 1] > 60  # overlay paints the mask red over a grey render
    left, right = np.zeros((48, 64), bool), np.zeros((48, 64), bool)
    left[:, :24], right[:, 40:] = True, True
    assert masks["red ball"][left].mean() > 0.1 and not masks["red ball"][right].any()
    assert masks["blue cup"][right].mean() > 0.1 and not masks["blue cup"][left].any()
    heat = r.render(c2w, fov, 64, 48, ViewOptions(mode="heatmap", query="red ball"))
    assert not np.array_equal(heat, r.render(c2w, fov, 64, 48, ViewOptions(mode="heatmap", query="blue cup")))
    pca = r.render(c2w, fov, 64, 48, ViewOptions(mode="pca"))
    assert len(np.unique(pca.reshape(-1, 3), axis=0)) > 3  # objects get different colours
    # no query yet: heatmap mode shows the plain render
    assert np.array_equal(r.render(c2w, fov, 64, 48, ViewOptions(mode="heatmap")), r.render(c2w, fov, 64, 48))


def test_start_pose_without_cameras_looks_at_the_model(tmp_path):
    save_ply(blob_splats(), str(tmp_path / "point_cloud.ply"))
    m = load_viewer_model(ply=str(tmp_path / "point_cloud.ply"))
    pos, look_at, up, fov = start_pose(m)
    img = ViewRenderer(m).render(look_at_c2w(pos, look_at, up), fov, 48, 48)
    assert img.reshape(-1, 3).std(0).max() > 20


def test_view_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from gs_vq.cli.view import main

    save_ply(blob_splats(), str(tmp_path / "point_cloud.ply"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        busy = s.getsockname()[1]
        for args, msg in [(["-m", str(tmp_path / "missing")], "model folder not found"),
                          (["--ply", str(tmp_path / "nope.ply")], "not found"),
                          ([], "give a model folder"),
                          (["-m", str(tmp_path), "--host", "127.0.0.1", "--port", str(busy)], "in use")]:
            with pytest.raises(SystemExit) as e:
                main(args)
            err = capsys.readouterr().err
            assert e.value.code == 2 and err.startswith("error: ") and msg in err, err
            assert len(err.strip().splitlines()) == 1


def test_viewer_panel_and_render_loop_without_a_browser(sem_model):
    """GsVqViewer on a real viser server: the frame function nerfview calls, its status line, and
    a failing frame that falls back to RGB with the error kept in the status line."""
    from nerfview import CameraState

    from gs_vq.viewer.app import GsVqViewer
    from browser import free_port
    import viser

    m = load_viewer_model(str(sem_model))
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        v = GsVqViewer(server, m, 128)
        c2w, fov = front_pose()
        state, tab = CameraState(fov=fov, aspect=64 / 48, c2w=c2w), v.render_tab_state
        tab.viewer_width, tab.viewer_height = 64, 48
        assert tab.viewer_res == 128
        img = v.render_frame(state, tab)
        assert img.shape == (48, 64, 3) and v.status.content.startswith("frame 1: 64x48") and "RGB" in v.status.content
        v.opts.mode, v.opts.query = "mask", "red ball"
        masked = v.render_frame(state, tab)
        assert "query mask 'red ball'" in v.status.content and not np.array_equal(masked, img)
        v.opts.keep = torch.zeros(3, dtype=torch.bool)  # a broken selection: the frame falls back to RGB
        v.render_frame(state, tab)
        assert "error: selection" in v.status.content and v.opts.mode == "rgb"
    finally:
        server.stop()
