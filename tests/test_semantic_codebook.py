"""Semantic codebook: decoding, the three losses, initialisation."""

import pytest
import torch
import torch.nn.functional as F

from gs_vq.errors import GsVqError
from gs_vq.semantics.codebook import (SemanticCodebook, code_ce_loss, cosine_loss, entropy_loss,
                                      semantic_losses)


def clusters(n_clusters=4, per=200, dim=32, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_clusters, dim, generator=g), dim=-1)
    pts = centres.repeat_interleave(per, 0) + spread * torch.randn(n_clusters * per, dim, generator=g)
    return centres, F.normalize(pts, dim=-1)


def test_entropy_decreases_as_an_entry_moves_onto_a_cluster():
    centres, pts = clusters(n_clusters=1)
    g = torch.Generator().manual_seed(1)
    codes = F.normalize(torch.randn(16, 32, generator=g), dim=-1)  # random entries, none on the cluster
    start = codes[0].clone()
    values = []
    for t in torch.linspace(0, 1, 11):
        c = codes.clone()
        c[0] = F.normalize((1 - t) * start + t * centres[0], dim=0)  # entry 0 slides onto the cluster
        values.append(entropy_loss(pts, c, tau=10.0).item())
    assert all(b < a for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.5 * values[0]


def test_entropy_gradient_pulls_entries_onto_clusters():
    centres, pts = clusters(n_clusters=3)
    g = torch.Generator().manual_seed(2)
    codes = torch.nn.Parameter(F.normalize(torch.rand(8, 32, generator=g) * 2 - 1, dim=-1))
    best_before = (centres @ F.normalize(codes.detach(), dim=-1).T).max(dim=1).values
    opt = torch.optim.Adam([codes], lr=0.02)
    for _ in range(300):
        loss = entropy_loss(pts, codes, tau=10.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    best_after = (centres @ F.normalize(codes.detach(), dim=-1).T).max(dim=1).values
    assert (best_after > 0.85).all() and (best_after > best_before + 0.3).all(), (best_before, best_after)


def test_decode_shapes_and_losses():
    cb = SemanticCodebook(feature_dim=8, num_codes=5, code_dim=32, decoder="mlp", hidden=16)
    feats = torch.randn(7, 3, 8)
    logits, w, dec = cb.decode(feats)
    assert logits.shape == (7, 3, 5) and w.shape == (7, 3, 5) and dec.shape == (7, 3, 32)
    assert torch.allclose(w.sum(-1), torch.ones(7, 3), atol=1e-6)
    codes = cb.unit_codes().detach()
    assert cosine_loss(codes[:3], codes[:3] * 2).abs() < 1e-6  # scale-free
    targets = codes[[4, 1, 1]] + 0.01 * torch.randn(3, 32)
    assert cb.nearest(targets).tolist() == [4, 1, 1]
    sharp = torch.full((3, 5), -20.0)
    sharp[torch.arange(3), torch.tensor([4, 1, 1])] = 20.0
    assert code_ce_loss(sharp, targets, codes) < 1e-6 and code_ce_loss(-sharp, targets, codes) > 10
    losses = semantic_losses(cb, torch.randn(10, 8), torch.randn(10, 32), which=("cos", "entropy"))
    assert set(losses) == {"cos", "entropy"}
    with pytest.raises(GsVqError, match="channels"):
        cb.logits(torch.randn(4, 9))


def test_training_fits_decoder_and_codebook():
    """Decoder + k-means-initialised codebook learn to reproduce clustered targets from a learnable
    low-dimensional code per point."""
    centres, pts = clusters(n_clusters=4, per=50)
    labels = torch.arange(4).repeat_interleave(50)
    cb = SemanticCodebook(feature_dim=4, num_codes=8, code_dim=32)
    cb.init_kmeans([pts[0::2], pts[1::2]], k_per_view=8)
    feats = torch.nn.Parameter(0.1 * torch.randn(200, 4))
    opt = torch.optim.Adam([feats, *cb.parameters()], lr=0.03)
    for _ in range(300):
        losses = semantic_losses(cb, feats, pts)
        loss = losses["cos"] + 0.1 * losses["ce"] + 0.1 * losses["entropy"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, _, dec = cb.decode(feats)
    assert F.cosine_similarity(dec, pts, dim=-1).mean() > 0.95
    # every cluster is decoded mostly onto its own entries
    assert (F.normalize(dec, dim=-1) @ centres.T).argmax(-1).eq(labels).float().mean() > 0.98


def test_kmeans_init_finds_the_clusters():
    centres, pts = clusters(n_clusters=5, per=100, spread=0.02)
    views = [pts[i::4] for i in range(4)]  # four "views", each sees every cluster
    cb = SemanticCodebook(feature_dim=8, num_codes=5, code_dim=32)
    cb.init_kmeans(views, k_per_view=8)
    sim = centres @ cb.unit_codes().detach().T  # [5, 5]
    assert (sim.max(dim=1).values > 0.99).all()


def test_head_state_round_trip():
    cb = SemanticCodebook(feature_dim=6, num_codes=4, code_dim=12, decoder="mlp", hidden=10)
    again = SemanticCodebook.from_head_state(cb.head_state())
    x = torch.randn(5, 6)
    assert torch.equal(cb.decode(x)[2], again.decode(x)[2])
    with pytest.raises(GsVqError, match="decoder"):
        SemanticCodebook(6, 4, 12, decoder="conv")
