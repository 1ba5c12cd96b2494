"""The pieces of the text-query path chosen on the validation labelled scenes: the ``labels`` rule
(the default since issue 26) and the ``nearest`` entry rule, the lifted decoder's bias for copied
entries, and the labelled scenes themselves."""

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
from gs_vq.semantics.codebook import SemanticCodebook
from gs_vq.semantics.head import SemanticHead
from gs_vq.semantics.scoring import (DEFAULT_MASK_RULE, LABEL_TEMPLATES, TEMPLATES, entry_scores, names_one_object,
                                     select_entries, select_labels)


def cosines(vectors: torch.Tensor) -> torch.Tensor:
    u = F.normalize(vectors, dim=-1)
    return u @ u.T  # [K, K]


def test_nearest_rule_takes_every_entry_the_query_is_nearer_to():
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


class TableEncoder:
    """A text encoder for tests: a fixed vector per text, the prompt templates ignored (so each
    text's ensemble is its own vector)."""

    def __init__(self, table):
        self.table = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in table.items()}
        self.prefixes = sorted({t.split("{}")[0] for t in TEMPLATES + LABEL_TEMPLATES if t.split("{}")[0]}, key=len, reverse=True)

    def encode(self, texts):
        out = []
        for t in texts:
            for p in self.prefixes:
                if t.startswith(p) and t[len(p):] in self.table:
                    t = t[len(p):]
                    break
            out.append(self.table[t])
        return torch.stack(out)


def tiny_head(label_vectors, copies):
    """A lifted-like head: entries are copies of the label vectors (``copies[i]`` of label ``i``)."""
    texts = list(label_vectors)
    codes = torch.cat([F.normalize(torch.as_tensor(label_vectors[t], dtype=torch.float32), dim=0)[None].repeat(n, 1)
                       for t, n in zip(texts, copies)])  # [K, D]
    cb = SemanticCodebook(feature_dim=4, num_codes=codes.shape[0], code_dim=codes.shape[1])
    with torch.no_grad():
        cb.codes.copy_(codes)
    return SemanticHead(cb, EncoderSpec("minilm", "test", codes.shape[1]), torch.ones(codes.shape[0], dtype=torch.bool),
                        texts=tuple(texts))


def test_labels_rule_is_the_default_and_selects_several_labels_for_a_class_query():
    assert DEFAULT_MASK_RULE == "labels"
    labels = {"background": [0, 0, 0, 1.0], "apple": [1.0, 0.3, 0, 0], "lemon": [1.0, -0.3, 0, 0],
              "table": [0, 0.2, 1.0, 0.1]}
    enc = TableEncoder({**labels, "fruit": [1.0, 0.0, 0.4, 0], "a sour citrus fruit": [1.0, -0.2, 0.0, 0],
                        "something to eat on": [0.2, 0.1, 1.0, 0], "stuff": [0, 0, 0.1, 1.0],
                        "object": [0.1, 0, 0, 1.0], "things": [0, 0.1, 0, 1.0], "texture": [0, 0, 0, 1.0]})
    head = tiny_head(labels, copies=[2, 3, 1, 2])  # entries: bg bg apple apple apple lemon table table
    texts = ["fruit", "a sour citrus fruit", "apple", "something to eat on", "stuff"]
    e = entry_scores(head, texts, "labels", enc)  # [T, K]
    owner = ["background"] * 2 + ["apple"] * 3 + ["lemon"] + ["table"] * 2
    picked = lambda row: sorted({owner[k] for k in torch.nonzero(row > 0.5).flatten().tolist()})  # noqa: E731
    assert picked(e[0]) == ["apple", "lemon"]  # several objects: both labels, every copy
    assert e[0, 2:5].tolist() == [1.0, 1.0, 1.0]
    assert picked(e[1]) == ["lemon"]  # "a ...": one object
    assert picked(e[2]) == ["apple"]  # a label query selects its label alone
    assert picked(e[3]) == ["table"]
    assert picked(e[4]) != ["background"]  # the background label is never selected
    # without label texts the labels rule is the nearest rule
    bare = tiny_head(labels, copies=[2, 3, 1, 2])
    bare.texts = ()
    assert torch.equal(entry_scores(bare, texts, "labels", enc), entry_scores(bare, texts, "nearest", enc))


def test_select_labels_one_object_against_several():
    ll = torch.tensor([[1.0, 0.6, 0.1], [0.6, 1.0, 0.1], [0.1, 0.1, 1.0]])
    s = torch.tensor([0.64, 0.58, 0.2])  # "fruit": both fruits, although the second is not nearer than its neighbour
    assert select_labels(s, ll, one=False).tolist() == [True, True, False]
    assert select_labels(s, ll, one=True).tolist() == [True, False, False]
    assert select_labels(torch.tensor([0.99, 0.6, 0.1]), ll, one=False).tolist() == [True, False, False]  # a label
    assert select_labels(s, ll, one=False, several_min=1).tolist() == [True, False, False]
    assert select_labels(torch.tensor([]), torch.zeros(0, 0), one=True).tolist() == []
    assert names_one_object("a couch") and names_one_object("Something to drink from")
    assert names_one_object("where birds drink") and names_one_object("the grass")
    assert not names_one_object("fruit") and not names_one_object("garden tools") and not names_one_object("")


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
    held = sorted(n for n, r in ROLES.items() if r == "held-out")
    assert held == ["bathroom", "campsite", "classroom", "workshop"]  # the v1 rooms were looked at: validation
    assert sum(r == "validation" for r in ROLES.values()) == 6
    seen = {o[0] for n in SCENES if ROLES[n] == "validation" for o in SCENES[n]["objects"]}
    for n in held:  # held-out rooms share no object with the rooms settings were chosen on
        assert not {o[0] for o in SCENES[n]["objects"]} & seen, n


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
    assert "labels (default)" in text
