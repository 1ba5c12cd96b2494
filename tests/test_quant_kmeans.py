"""k-means, nearest-code search and hierarchical k-means (gs_vq.quant)."""

import pytest
import torch

from gs_vq.errors import GsVqError
from gs_vq.quant import assign, hierarchical_kmeans, kmeans, nearest


def planted(k=8, per=60, dim=6, spread=10.0, noise=0.05, seed=0):
    """Well-separated clusters: (points [k*per, dim] shuffled, labels [k*per], centres [k, dim])."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * spread
    labels = torch.arange(k).repeat_interleave(per)
    x = centres[labels] + noise * torch.randn(k * per, dim, generator=g)
    perm = torch.randperm(k * per, generator=g)
    return x[perm], labels[perm], centres


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when the two labelings are equal up to a renaming of the labels."""
    pairs = torch.unique(torch.stack([a, b], dim=1), dim=0)
    return pairs.shape[0] == len(torch.unique(a)) == len(torch.unique(b))


def test_recovers_planted_clusters_exactly():
    x, labels, centres = planted()
    r = kmeans(x, 8, iters=20, seed=3)
    assert same_partition(r.assignments, labels)
    # every true centre has a found centre within the noise level
    d = torch.cdist(centres, r.centroids).min(dim=1).values
    assert float(d.max()) < 0.05
    assert r.counts.sum() == x.shape[0] and bool((r.counts > 0).all())
    assert r.assignments.dtype == torch.int64 and r.centroids.shape == (8, 6)
    assert r.mse == pytest.approx(float((x - r.centroids[r.assignments]).square().mean()), rel=1e-4)


def test_random_init_and_history_decreases():
    x, _, _ = planted(k=5, per=40)
    r = kmeans(x, 5, iters=10, init="random", seed=1)
    assert all(b <= a * (1 + 1e-5) for a, b in zip(r.history, r.history[1:]))
    assert r.mse <= r.history[0] + 1e-6


def test_dead_clusters_are_reseeded_from_worst_served_points():
    x, labels, centres = planted(k=4, per=50, dim=3)
    # two copies of one centre (the second never wins a tie) and one centre far from every point
    init = torch.stack([centres[0], centres[0], centres[1], torch.full((3,), 1e4)])
    r = kmeans(x, 4, iters=10, init_centroids=init)
    assert bool((r.counts > 0).all())
    assert same_partition(r.assignments, labels)


def test_cosine_mode_on_directions_with_varied_norms():
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    labels = torch.arange(5).repeat_interleave(40)
    norms = torch.rand(200, 1, generator=g) * 20 + 0.1  # l2 k-means would split by norm
    x = (dirs[labels] + 0.02 * torch.randn(200, 8, generator=g)) * norms
    r = kmeans(x, 5, iters=15, metric="cosine", seed=2)
    assert same_partition(r.assignments, labels)
    assert torch.allclose(r.centroids.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.equal(assign(x, r.centroids, metric="cosine"), r.assignments)


def test_deterministic_with_seed():
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    a = kmeans(x, 16, iters=5, seed=7)
    b = kmeans(x, 16, iters=5, seed=7)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assignments, b.assignments)


def test_warm_start_does_not_get_worse():
    x = torch.randn(800, 5, generator=torch.Generator().manual_seed(1))
    first = kmeans(x, 12, iters=5, seed=0)
    again = kmeans(x, 12, iters=3, init_centroids=first.centroids)
    assert again.mse <= first.mse + 1e-6


def test_minibatch_recovers_planted_clusters():
    x, labels, _ = planted(k=6, per=200, dim=4)
    r = kmeans(x, 6, iters=40, batch_size=128, seed=0)
    assert same_partition(r.assignments, labels)


def test_weights_act_like_repeated_points():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0]])
    r = kmeans(x, 1, iters=2, weights=torch.tensor([1.0, 3.0, 0.0]))
    assert torch.allclose(r.centroids[0], torch.tensor([0.75, 0.0]))


@pytest.mark.parametrize("k", [7, 300, 700, 1100])
def test_assign_matches_brute_force(k):
    g = torch.Generator().manual_seed(k)
    x, c = torch.randn(1500, 12, generator=g) + 3.0, torch.randn(k, 12, generator=g) + 3.0
    want = torch.cdist(x.double(), c.double()).argmin(dim=1)
    for chunk in (None, 64, 1000):
        d2, idx = nearest(x, c, chunk_size=chunk)
        assert (idx == want).float().mean() > 0.999  # float32 vs float64 near-ties
        assert torch.allclose(d2, (x - c[idx]).square().sum(dim=1), rtol=1e-3, atol=1e-3)


def test_hierarchical_kmeans_over_chunks():
    x, labels, centres = planted(k=6, per=100, dim=5)
    chunks = (x[i : i + 150] for i in range(0, 600, 150))  # a generator: one pass only
    r = hierarchical_kmeans(chunks, k_per_chunk=20, k=6, seed=0)
    assert r.centroids.shape == (6, 5) and r.assignments.shape == (80,)
    assert float(torch.cdist(centres, r.centroids).min(dim=1).values.max()) < 0.05
    assert float(r.counts.sum()) == pytest.approx(600)
    full = assign(x, r.centroids)
    assert same_partition(full, labels)


def test_errors_are_one_line_gsvq_errors():
    x = torch.randn(10, 3)
    with pytest.raises(GsVqError):
        kmeans(x, 11)
    with pytest.raises(GsVqError):
        kmeans(x, 2, metric="manhattan")
    with pytest.raises(GsVqError):
        kmeans(x, 2, init_centroids=torch.zeros(3, 3))
    with pytest.raises(GsVqError):
        assign(x, torch.zeros(4, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, labels, _ = planted(k=6, per=80, dim=5)
    cpu = kmeans(x, 6, iters=10, seed=4)
    gpu = kmeans(x.cuda(), 6, iters=10, seed=4)
    assert gpu.centroids.is_cuda and gpu.assignments.is_cuda
    assert torch.equal(gpu.assignments.cpu(), cpu.assignments)  # same draws on both devices
    assert torch.allclose(gpu.centroids.cpu(), cpu.centroids, atol=1e-4)
    assert same_partition(assign(x.cuda(), gpu.centroids).cpu(), labels)


def test_row_shards_match_a_single_pass():
    g = torch.Generator().manual_seed(5)
    x, c = torch.randn(9000, 8, generator=g), torch.randn(600, 8, generator=g)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        d2_one, idx_one = nearest(x, c)
        km_one = kmeans(x, 20, iters=3)
        torch.set_num_threads(3)  # three shards of 3000 rows, run concurrently
        d2_three, idx_three = nearest(x, c)
        km_three = kmeans(x, 20, iters=3)
        assert torch.get_num_threads() == 3  # restored after the library call
    finally:
        torch.set_num_threads(before)
    assert torch.equal(idx_one, idx_three) and torch.equal(d2_one, d2_three)
    assert torch.equal(km_one.assignments, km_three.assignments)
    assert torch.allclose(km_one.centroids, km_three.centroids, atol=1e-5)


def test_segment_count_is_bincount():
    """index_add_ counts (no host read of the largest index) equal torch.bincount, weighted or not."""
    from gs_vq.quant.search import segment_count

    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, 37, (5000,), generator=g)
    w = torch.rand(5000, generator=g)
    assert torch.equal(segment_count(index, 40), torch.bincount(index, minlength=40).float())
    assert torch.allclose(segment_count(index, 40, w, dtype=torch.float64),
                          torch.bincount(index, weights=w.double(), minlength=40), rtol=1e-6)
    out = torch.ones(40)
    assert segment_count(index, 40, out=out) is out and out[0] == 1 + (index == 0).sum()
