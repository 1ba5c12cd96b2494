"""Per-Gaussian labels, training-free lifting, 3D selection and its evaluation on a tiny scene whose
Gaussians carry known object ids (the masks are rendered from them)."""

import pytest
import torch

from gs_vq.errors import GsVqError
from gs_vq.io import load_ply, load_splats
from gs_vq.semantics import encoders
from gs_vq.semantics.features import load_features
from gs_vq.semantics.labelfiles import label_attributes
from gs_vq.semantics.labels import compute_labels, direct_labels, labels_for, stored_labels
from gs_vq.semantics.lift import lift_field
from gs_vq.semantics.select import evaluate_selection, query_selection, write_selection
from test_semantic_lib import LABELS, labelled_scene, tiny_gaussians


@pytest.fixture(scope="module")
def lifted(tmp_path_factory):
    """The training-free field of the tiny scene (bag-of-words label maps), with the test encoder."""
    folder = tmp_path_factory.mktemp("feats")
    scene, enc = labelled_scene(str(folder), downscale=1)
    maps = load_features(str(folder), scene.train_cameras)
    splats = dict(scene.splats)
    feats, head = lift_field(splats, scene.train_cameras, maps, feature_dim=8, num_codes=6, k_per_view=4)
    splats["features"] = feats
    key = (enc.spec.kind, enc.spec.model, enc.spec.checkpoint, "cpu")
    encoders._CACHE[key] = enc
    yield scene, splats, head
    encoders._CACHE.pop(key)


def test_lifted_labels_recover_object_ids(lifted):
    scene, splats, head = lifted
    ids = tiny_gaussians()["ids"]
    for method in ("lift", "direct"):
        labels, conf = compute_labels(splats, head, scene.train_cameras, method, downscale=1)
        assert labels.shape == ids.shape and ((conf >= 0) & (conf <= 1)).all()
        # the entry each object's Gaussians vote for is that object's alone
        for oid in range(1, 4):
            mine = labels[ids == oid]
            top = torch.mode(mine).values
            assert (mine == top).float().mean() > 0.75, (method, oid)
            assert (labels[ids != oid] == top).float().mean() < 0.05, (method, oid)
    with pytest.raises(GsVqError, match="label method"):
        compute_labels(splats, head, scene.train_cameras, "vote")
    with pytest.raises(GsVqError, match="no per-Gaussian semantic features"):
        direct_labels({k: v for k, v in splats.items() if k != "features"}, head)


def test_query_selection_and_3d_evaluation(lifted):
    scene, splats, head = lifted
    ids = tiny_gaussians()["ids"]
    keep = query_selection(splats, head, ["red apple"], cameras=scene.train_cameras)
    assert (ids[keep] == 1).float().mean() > 0.9 and keep[ids == 1].float().mean() > 0.9
    both = query_selection(splats, head, ["red apple", "wooden box"], cameras=scene.train_cameras)
    assert set(ids[both].tolist()) >= {1, 3} and int(both.sum()) > int(keep.sum())
    res = evaluate_selection(splats, scene.train_cameras, head, LABELS, "cpu", train_cameras=scene.train_cameras)
    assert res["miou_3d"] > 0.7 and set(res["iou_3d"]) == {"red apple", "blue coffee mug", "wooden box"}
    assert res["selected_3d"]["red apple"] == int(keep.sum()) and "fruit" in res["iou_3d_extra"]


def test_extract_and_remove_write_standard_plys(lifted, tmp_path):
    scene, splats, head = lifted
    keep = query_selection(splats, head, ["blue coffee mug"], cameras=scene.train_cameras)
    out = write_selection(splats, keep, str(tmp_path / "mug.ply"), str(tmp_path / "rest.ply"), ["blue coffee mug"])
    mug, rest = load_ply(str(tmp_path / "mug.ply")), load_ply(str(tmp_path / "rest.ply"))
    assert out["selected"] == len(mug["means"]) == int(keep.sum())
    assert len(mug["means"]) + len(rest["means"]) == len(splats["means"])
    assert torch.equal(mug["means"], splats["means"][keep]) and torch.equal(rest["sh0"], splats["sh0"][~keep])
    with pytest.raises(GsVqError, match="selects no Gaussians"):
        write_selection(splats, torch.zeros_like(keep), str(tmp_path / "none.ply"), None, ["nothing"])
    assert not (tmp_path / "none.ply").exists()
    with pytest.raises(GsVqError, match="every Gaussian"):
        write_selection(splats, torch.ones_like(keep), None, str(tmp_path / "all.ply"), ["everything"])


def test_labels_round_trip_through_ply_and_compressed(lifted, tmp_path):
    from gs_vq.io.compressed import CompressedScene, describe_compressed, write_compressed
    from gs_vq.io.ply import save_ply

    scene, splats, head = lifted
    labels, conf = labels_for(splats, head, scene.train_cameras)
    save_ply({**splats, "labels": labels, "labelconf": conf}, str(tmp_path / "p.ply"))
    back = load_ply(str(tmp_path / "p.ply"))
    got = stored_labels(back)
    assert torch.equal(got[0], labels) and torch.allclose(got[1], conf)
    # the stored labels win over recomputing
    again = labels_for({**back, "features": torch.zeros_like(back["features"])}, head, None)
    assert torch.equal(again[0], labels)
    n = len(labels)
    cs = CompressedScene(means=splats["means"], opacities=splats["opacities"],
                         attributes=label_attributes(labels, conf, head.codebook.num_codes),
                         raw={"features": splats["features"]}, raw_precision="float32")
    info = write_compressed(str(tmp_path / "c.ply"), cs, pos_bits=32, opacity_bits=32)
    loaded = load_splats(str(tmp_path / "c.ply"))
    order = torch.as_tensor(info["order"])
    c_labels, c_conf = stored_labels(loaded)
    assert torch.equal(c_labels, labels[order])
    assert (c_conf - conf[order]).abs().max() <= 1 / 32 + 1e-3  # 4-bit bins
    bits = describe_compressed(str(tmp_path / "c.ply"))["bits_per_gaussian"]
    assert bits["labels.index"] <= 8 and bits["labelconf.index"] <= 4 + 1e-6 and n > 0


def test_gap_rule_keeps_every_entry_above_the_largest_drop():
    import torch.nn.functional as F

    from gs_vq.semantics.scoring import entry_gap_match

    codes = torch.eye(5)
    q = F.normalize(torch.tensor([0.60, 0.59, 0.45, 0.2, 0.62]), dim=0)
    active = torch.tensor([True, True, True, True, False])  # the closest entry is unused
    assert entry_gap_match(codes, q, active).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]  # unused: matched, never the best
    q1 = F.normalize(torch.tensor([0.9, 0.3, 0.28, 0.1, 0.0]), dim=0)
    assert entry_gap_match(codes, q1, active).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_gap_rule_skips_entries_a_canonical_negative_beats():
    import torch.nn.functional as F

    from gs_vq.semantics.scoring import entry_gap_match

    # entries: book, background, ball, box; negatives: "texture"-like direction close to background
    codes = F.normalize(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.3, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0],
                                      [0.0, 0.0, 0.0, 1.0]]), dim=1)
    negatives = F.normalize(torch.tensor([[0.0, 1.0, 0.2, 0.2]]), dim=1)
    q = F.normalize(torch.tensor([0.36, 0.25, 0.23, 0.1]), dim=0)  # "something to read"
    active = torch.ones(4, dtype=torch.bool)
    assert entry_gap_match(codes, q, active)[:2].tolist() == [1.0, 1.0]  # without negatives: book + background
    assert entry_gap_match(codes, q, active, negatives=negatives).tolist() == [1.0, 0.0, 0.0, 0.0]
    # a query every negative beats everywhere falls back to the plain rule
    far = F.normalize(torch.tensor([0.0, 1.0, 0.2, 0.2]), dim=0)
    assert entry_gap_match(codes, far, active, negatives=negatives).sum() >= 1


def test_lift_initialises_the_trained_field(tmp_path):
    from test_semantic_lib import frozen_params, semantic_field

    scene, _ = labelled_scene(str(tmp_path), downscale=1)
    splats, opts = frozen_params(scene)
    cfg = {"features_dir": str(tmp_path), "num_codes": 6, "kmeans_per_view": 4, "feature_dim": 8,
           "codebook_init": "lift"}
    plugin = semantic_field(cfg, scene, splats, opts)
    assert splats["features"].shape == (len(splats["means"]), 8) and "features" in opts
    assert splats["features"].abs().sum() > 0  # lifted, not random
    labels, _ = direct_labels(dict(splats.items()), plugin.head())
    ids = tiny_gaussians()["ids"]
    assert len(set(labels[ids == 1].tolist()) & set(labels[ids == 2].tolist())) == 0  # apart from the start


def test_query_files_and_ids_are_checked(tmp_path):
    from gs_vq.semantics.view_queries import slug
    from gs_vq.semantics.labels_json import extra_queries

    assert len({slug(t) for t in ["red apple", "red-apple", "red apple!"]}) == 3
    with pytest.raises(GsVqError, match=r"ids \[7\]"):
        extra_queries({**LABELS, "queries": [{"text": "x", "ids": [1, 7]}]})


def test_label_scores_composite_only_where_the_selection_reaches():
    """The label path renders the selection's pixel box only: the same shares as a full render of
    every Gaussian with the 0/1 channel, everywhere (0 outside the box), and no box for nothing."""
    from gs_vq.render import rasterize
    from gs_vq.render.synthetic import random_scene
    from gs_vq.semantics.label_render import label_scores, selected_boxes, union

    s = random_scene(4000, width=96, height=80, sh_degree=0, sigma_px=(0.5, 5.0), seed=2)
    raw = {"means": s["means"], "quats": s["quats"], "scales": torch.log(s["scales"]),
           "opacities": torch.logit(s["opacities"])}
    cam = s["means"] @ s["viewmats"][0, :3, :3].T + s["viewmats"][0, :3, 3]  # [N, 3]
    near = (cam[:, :2].norm(dim=-1) < 0.3) & (cam[:, 2] < 4.0)  # in front of half the scene (depths 2-6)
    apart = ((cam[:, :2] - torch.tensor([1.2, 0.9])).norm(dim=-1) < 0.15) & (cam[:, 2] < 4.5)  # a second, far cluster
    channels = torch.stack([near | apart, near], -1).float()  # [N, 2]: two clusters (empty cells between); one
    full, _, _ = rasterize(s["means"], s["quats"], s["scales"], s["opacities"], channels, s["viewmats"], s["Ks"],
                           96, 80, sh_degree=None)
    fast = label_scores(raw, channels, s["viewmats"][0], s["Ks"][0], 96, 80)
    torch.testing.assert_close(fast, full[0], atol=1e-5, rtol=0)
    assert apart.sum() > 3 and (fast[..., 0] > fast[..., 1]).any()  # the far cluster is in the first mask
    x0, y0, w, h = union(selected_boxes([s[k][near] for k in ("means", "quats", "scales", "opacities")],
                                        s["viewmats"], s["Ks"], 96, 80))
    assert w * h < 0.5 * 96 * 80  # a real saving: the cluster covers a part of the view
    assert (full[0, ..., 1] > 0).sum() == (full[0, y0:y0 + h, x0:x0 + w, 1] > 0).sum()  # nothing outside it
    none = label_scores(raw, torch.zeros(len(near), 1), s["viewmats"][0], s["Ks"][0], 96, 80)
    assert none.shape == (80, 96, 1) and not none.any()
