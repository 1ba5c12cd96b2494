"""The pieces of the text-query path chosen on the validation labelled scenes: the ``nearest``
entry rule, the lifted decoder's bias for copied entries, and the labelled scenes themselves."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gs_vq.data.labelled_scenes import ROLES, SCENES, scene_labels, write_labelled_scene
from gs_vq.errors import GsVqError
from gs_vq.semantics.encoders import EncoderSpec
from gs_vq.semantics.features import FeatureMaps
from gs_vq.semantics.lift import lifted_head
from gs_vq.semantics.scoring import DEFAULT_MASK_RULE, select_entries


def cosines(vectors: torch.Tensor) -> torch.Tensor:
    u = F.normalize(vectors, dim=-1)
    return u @ u.T  # [K, K]


def test_nearest_rule_is_the_default_and_takes_every_entry_the_query_is_nearer_to():
    assert DEFAULT_MASK_RULE == "nearest"
    # entries: apple and lemon (close to each other), table and chair (close to each other)
    ll = torch.tensor([[1.0, 0.6, 0.1, 0.1],
                       [0.6, 1.0, 0.1, 0.1],
                       [0.1, 0.1, 1.0, 0.5],
                       [0.1, 0.1, 0.5, 1.0]])
    fruit = torch.tensor([0.75, 0.70, 0.15, 0.10])  # nearer to both fruits than they are to each other
    assert select_entries(fruit, ll).tolist() == [True, True, False, False]
    apple = torch.tensor([0.95, 0.55, 0.10, 0.10])  # lemon: 0.55 < its nearest other entry (0.6) + margin
    assert select_entries(apple, ll).tolist() == [True, False, False, False]
    far = torch.tensor([0.90, 0.68, 0.1, 0.1])  # beats lemon's nearest by the margin, but 0.22 below the best
    assert select_entries(far, ll, window=0.2).tolist() == [True, False, False, False]
    assert select_entries(far, ll, window=0.3).tolist() == [True, True, False, False]


def test_nearest_rule_selects_copies_together_and_respects_active_and_negatives():
    v = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    ll = cosines(v)
    s = torch.tensor([0.2, 0.2, 0.9, 0.1])
    assert select_entries(s, ll).tolist() == [False, False, True, False]
    s = torch.tensor([0.9, 0.9, 0.2, 0.1])
    assert select_entries(s, ll).tolist() == [True, True, False, False]  # both copies
    active = torch.tensor([False, False, True, True])  # entry 3: 0.1 beats its nearest other (0) by the margin
    assert select_entries(s, ll, active=active).tolist() == [False, False, True, True]
    s = torch.tensor([0.9, 0.9, 0.2, 0.04])
    assert select_entries(s, ll, active=active).tolist() == [False, False, True, False]  # best active entry
    negatives = torch.tensor([[0.95], [0.95], [0.0], [0.0]])  # entries 0, 1 are nearer a canonical phrase
    assert select_entries(s, ll, negatives=negatives).tolist() == [False, False, True, False]


def test_lifted_decoder_gives_copied_entries_the_weight_of_one():
    a, b = F.normalize(torch.tensor([1.0, 0.2, 0.0, 0.0]), dim=0), F.normalize(torch.tensor([0.0, 1.0, 0.3, 0.0]), dim=0)
    views = [torch.stack([a] * 6 + [b] * 2), torch.stack([a] * 5 + [b] * 3)]  # [8, 4] each: two labels only
    maps = FeatureMaps(maps={}, encoder=EncoderSpec("minilm", "test", 4), dim=4, interp="nearest", meta={})
    basis = torch.eye(4)  # [D, F]: features are the embeddings themselves
    head = lifted_head(maps, views, basis, num_codes=4, k_per_view=4, tau=5.0)
    codes = head.codebook.unit_codes()  # [K, D]
    is_a = (codes @ a > 1 - 1e-5)  # [K]
    is_b = (codes @ b > 1 - 1e-5)
    assert (is_a | is_b).all() and is_a.sum() >= 1 and is_b.sum() >= 1 and (is_a.sum() + is_b.sum()) == 4
    assert max(is_a.sum(), is_b.sum()) > 1, "the test needs copied entries"
    f = 0.6 * a + 0.4 * b  # a rendered feature between the two labels
    w = head.codebook.weights(f[None])[0]  # [K]
    expected = torch.softmax(5.0 * torch.stack([a @ f, b @ f]), dim=0)  # a codebook without copies
    assert torch.allclose(torch.stack([w[is_a].sum(), w[is_b].sum()]), expected, atol=1e-5)


def test_scene_roles_split_validation_from_held_out():
    assert set(ROLES) == set(SCENES)
    assert sorted(set(ROLES.values())) == ["held-out", "validation"]
    assert sum(r == "validation" for r in ROLES.values()) >= 2 and sum(r == "held-out" for r in ROLES.values()) >= 2


@pytest.mark.parametrize("name", sorted(SCENES))
def test_scene_labels_name_every_kind_of_query(name):
    labels = scene_labels(name)
    names = {int(k): v for k, v in labels.items() if k.isdigit()}
    assert names[0] == "background" and len(names) == 10  # background, 8 objects, the ground
    kinds = {q["kind"] for q in labels["queries"]}
    assert {"synonym", "use"} <= kinds and kinds & {"class", "several"}
    for q in labels["queries"] + labels["attribute_queries"]:
        assert q["ids"] and set(q["ids"]) <= set(names) - {0}, q
    assert any(len(q["ids"]) > 1 for q in labels["queries"])  # several-object queries exist
    assert labels["role"] == ROLES[name]


def test_labelled_scene_masks_hold_the_labelled_objects(tmp_path):
    path = write_labelled_scene("kitchen", root=str(tmp_path), size=32, n_train=3, n_test=1)
    labels = json.loads((path / "labels.json").read_text())
    assert labels == json.loads(json.dumps(scene_labels("kitchen")))
    masks = sorted((path / "masks").rglob("*.png"))
    assert len(masks) == 4
    seen = set()
    for m in masks:
        ids = np.asarray(Image.open(m))
        assert ids.shape[:2] == (32, 32)
        seen |= set(np.unique(ids).tolist())
    assert seen <= {int(k) for k in labels if k.isdigit()}
    assert 9 in seen and len(seen - {0, 9}) >= 4  # the ground and most objects are visible
    assert write_labelled_scene("kitchen", root=str(tmp_path), size=32, n_train=3, n_test=1) == path  # cached
    with pytest.raises(GsVqError, match="unknown labelled scene"):
        write_labelled_scene("attic", root=str(tmp_path))


def test_render_help_states_the_limits_of_label_text_features():
    import argparse

    from gs_vq.cli.semantic_render import add_render_args

    p = argparse.ArgumentParser()
    add_render_args(p)
    text = " ".join(p.format_help().split())
    assert "know only what the label texts say" in text and "--source clip" in text
    assert "nearest (default)" in text
