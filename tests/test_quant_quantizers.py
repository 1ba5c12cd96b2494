"""Quantizer interface: VQ, PQ, RVQ, AQ, FSQ, soft indices, and build_quantizer (gs_vq.quant)."""

import pytest
import torch

from gs_vq.errors import GsVqError
from gs_vq.quant import (
    AdditiveQuantizer,
    ProductQuantizer,
    ResidualQuantizer,
    ScalarQuantizer,
    SoftIndexQuantizer,
    VectorQuantizer,
    beam_search,
    build_quantizer,
    least_squares_codebooks,
    straight_through,
)

CONFIGS = {
    "vq": dict(type="vq", dim=6, codebook_size=32, iters=8),
    "pq": dict(type="pq", dim=6, num_subvectors=4, codebook_size=16, iters=8),  # 2+2+1+1 dims
    "rvq": dict(type="rvq", dim=6, num_stages=3, codebook_size=16, iters=8, beam_size=3),
    "aq": dict(type="aq", dim=6, num_codebooks=3, codebook_size=16, iters=3, init_iters=8),
    "fsq": dict(type="fsq", dim=6, levels=[4, 8, 8, 4, 2, 16]),
}
HARD = ["vq", "pq", "rvq", "aq", "fsq"]


def data(n=600, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g) @ torch.randn(dim, dim, generator=g) * 0.5


@pytest.fixture(scope="module")
def fitted():
    x = data()
    return x, {name: build_quantizer(CONFIGS[name]).fit(x) for name in HARD}


def copy_of(qs, name):
    """A new quantizer holding the module-wide fitted one's state (tests may change it)."""
    q = build_quantizer(CONFIGS[name])
    q.load_state_dict(qs[name].state_dict())
    return q


@pytest.mark.parametrize("name", HARD)
def test_encode_decode_shapes_and_round_trip(fitted, name):
    x, qs = fitted
    q = qs[name]
    codes = q.encode(x)
    assert codes.dtype == torch.int64 and codes.shape == (600, q.num_codebooks)
    for m, k in enumerate(q.codebook_sizes):
        assert 0 <= int(codes[:, m].min()) and int(codes[:, m].max()) < k
    x_hat = q.decode(codes)
    assert x_hat.shape == x.shape
    assert float((x_hat - x).square().mean()) < float(x.square().mean())  # it approximates x
    # reconstructions are fixed points: encoding them again gives them back (exactly for
    # VQ / PQ / FSQ; sums of codewords are searched, not enumerated, so nearly always for RVQ / AQ)
    again = q.decode(q.encode(x_hat))
    kept = float(((again - x_hat).abs().amax(dim=1) < 1e-5).float().mean())
    assert kept == 1.0 if name in ("vq", "pq", "fsq") else kept > 0.9
    # leading dimensions are kept
    assert q.encode(x.view(30, 20, 6)).shape == (30, 20, q.num_codebooks)
    assert q.decode(codes.view(30, 20, -1)).shape == (30, 20, 6)


@pytest.mark.parametrize("name", HARD)
def test_straight_through_gradient_is_identity(fitted, name):
    x, qs = fitted
    xg = x[:50].clone().requires_grad_(True)
    y = qs[name](xg)
    assert torch.equal(y.detach(), qs[name].quantize(x[:50]))  # exactly the quantized value
    upstream = torch.randn_like(y)
    y.backward(upstream)
    assert torch.equal(xg.grad, upstream)


def test_straight_through_rejects_mismatched_shapes():
    with pytest.raises(GsVqError, match="shapes differ"):
        straight_through(torch.zeros(4, 3), torch.zeros(4, 2, requires_grad=True))


@pytest.mark.parametrize("name", HARD)
def test_state_dict_round_trip(fitted, name):
    x, qs = fitted
    fresh = copy_of(qs, name)
    assert torch.equal(fresh.encode(x), qs[name].encode(x))
    assert torch.equal(fresh.quantize(x), qs[name].quantize(x))


def test_bits_per_vector():
    assert VectorQuantizer(4, 4096).bits_per_vector == 12
    assert ProductQuantizer(45, 5, 256).bits_per_vector == 40
    assert ProductQuantizer(8, 2, 300).bits_per_vector == 18  # ceil(log2 300) = 9
    assert ResidualQuantizer(8, 4, 256).bits_per_vector == 32
    assert AdditiveQuantizer(8, 3, 1024).bits_per_vector == 30
    assert ScalarQuantizer(3, levels=[4, 5, 8]).bits_per_vector == 2 + 3 + 3
    assert SoftIndexQuantizer(8, 16).bits_per_vector == 4
    assert VectorQuantizer(4, 1).bits_per_vector == 0


def test_more_stages_and_joint_training_lower_the_error(fitted):
    x, qs = fitted
    one = ResidualQuantizer(6, 1, 16, iters=8, beam_size=3).fit(x)
    assert qs["rvq"].mse(x) < one.mse(x)
    greedy = ResidualQuantizer(6, 3, 16, iters=8, beam_size=1).fit(x)
    assert qs["rvq"].mse(x) <= greedy.mse(x) * 1.001
    assert qs["aq"].mse(x) <= qs["rvq"].mse(x) * 1.001


def test_beam_search_never_worse_than_greedy(fitted):
    x, qs = fitted
    books = qs["rvq"].stacked()
    err = {b: (x - qs["rvq"].decode(beam_search(x, books, b))).square().sum(1) for b in (1, 4)}
    assert float(err[4].mean()) <= float(err[1].mean()) + 1e-6


def test_least_squares_codebooks_fit_the_codes(fitted):
    x, qs = fitted
    q = qs["aq"]
    codes = q.encode(x)
    before = float((q.decode(codes) - x).square().mean())
    q2 = build_quantizer(CONFIGS["aq"])
    q2.load_state_dict(q.state_dict())
    q2.set_codebooks(list(least_squares_codebooks(x, codes, q.stacked(), ridge=1e-3)))
    assert float((q2.decode(codes) - x).square().mean()) <= before + 1e-6


def test_update_codebooks_from_assignments_sets_member_means():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]])
    q = VectorQuantizer(2, 3)
    q.set_codebooks([torch.tensor([[0.5, 0.5], [9.0, 9.0], [-5.0, -5.0]])])
    q.update_codebooks_from_assignments(x, torch.tensor([[0], [0], [1], [1]]))
    want = torch.tensor([[1.0, 0.0], [11.0, 10.0], [-5.0, -5.0]])  # empty code 2 unchanged
    assert torch.allclose(q.codebook, want)
    q.update_codebooks_from_assignments(x, torch.tensor([[0], [0], [1], [1]]), torch.tensor([3.0, 1.0, 0.0, 2.0]))
    want = torch.tensor([[0.5, 0.0], [12.0, 10.0], [-5.0, -5.0]])  # weighted means
    assert torch.allclose(q.codebook, want)


def test_sum_quantizer_update_lowers_error(fitted):
    x, qs = fitted
    for name in ("rvq", "aq"):
        q = copy_of(qs, name)
        codes = q.encode(x)
        before = float((q.decode(codes) - x).square().mean())
        q.update_codebooks_from_assignments(x, codes)
        assert float((q.decode(codes) - x).square().mean()) <= before + 1e-6


def test_sum_quantizer_update_equals_explicit_residual_targets(fitted):
    """The co-occurrence form of the block coordinate step gives the codebooks of the explicit
    one (x minus the other books' codewords, member means, book after book)."""
    x, qs = fitted
    for name in ("rvq", "aq"):
        fast, slow = copy_of(qs, name), copy_of(qs, name)
        codes = fast.encode(x)
        fast.update_codebooks_from_assignments(x, codes)
        slow._update_by_residuals(x, codes)
        for a, b in zip(fast.codebooks, slow.codebooks):
            assert torch.allclose(a, b, atol=1e-5), name
        w = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(0)) * 3  # [N] importance
        plain = copy_of(qs, name)
        plain.update_codebooks_from_assignments(x, codes)
        fast, slow = copy_of(qs, name), copy_of(qs, name)
        fast.update_codebooks_from_assignments(x, codes, w)
        slow._update_by_residuals(x, codes, w)
        for a, b, c in zip(fast.codebooks, slow.codebooks, plain.codebooks):
            assert torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-3), name


def test_refit_warm_start_keeps_or_lowers_error(fitted):
    x, qs = fitted
    for name in ("vq", "pq"):
        q = copy_of(qs, name)
        before = q.mse(x)
        assert q.refit(x, iters=2) is q and q.mse(x) <= before + 1e-6


def test_cosine_vector_quantizer_returns_unit_codewords():
    x = data(300, 6)
    q = VectorQuantizer(6, 8, metric="cosine", iters=5).fit(x)
    assert torch.allclose(q.codebook.norm(dim=1), torch.ones(8), atol=1e-5)
    cos = torch.nn.functional.normalize(x, dim=1) @ q.codebook.T
    assert torch.equal(q.encode(x)[:, 0], cos.argmax(dim=1))


def test_scalar_quantizer_grid():
    q = ScalarQuantizer(2, levels=5, low=[-1.0, 0.0], high=[1.0, 4.0])
    x = torch.tensor([[-0.6, 2.2], [3.0, -9.0]])
    assert q.encode(x).tolist() == [[1, 2], [4, 0]]  # values outside the range are clamped
    assert torch.allclose(q.quantize(x), torch.tensor([[-0.5, 2.0], [1.0, 0.0]]))
    q.fit(torch.tensor([[0.0, 10.0], [8.0, 20.0]]))
    assert torch.allclose(q.codebooks[0].flatten(), torch.tensor([0.0, 2.0, 4.0, 6.0, 8.0]))


def test_scalar_quantizer_clip_low():
    """``clip_low`` lifts only the bottom of the fitted range to that quantile; the top stays the
    maximum, and values below the new bottom are clamped to level 0."""
    x = torch.arange(101, dtype=torch.float32)[:, None]  # 0..100
    q = ScalarQuantizer(1, levels=9, clip_low=0.2).fit(x)
    assert q.low.item() == pytest.approx(20.0) and q.high.item() == pytest.approx(100.0)
    assert q.encode(torch.tensor([[5.0], [100.0]])).flatten().tolist() == [0, 8]
    both = ScalarQuantizer(1, levels=9, clip_quantile=0.1, clip_low=0.2).fit(x)
    assert both.low.item() == pytest.approx(20.0) and both.high.item() == pytest.approx(90.0)
    with pytest.raises(GsVqError, match="clip_low"):
        ScalarQuantizer(1, clip_low=1.0)


def test_soft_index_quantizer():
    x = data(200, 4)
    q = SoftIndexQuantizer(4, codebook_size=8, iters=5).fit(x)
    nearest = torch.cdist(x, q.codebook).argmin(dim=1)
    assert torch.equal(q.encode(x)[:, 0], nearest)  # starts at the hard assignment
    q.train()
    y = q(x)
    y.square().sum().backward()
    assert q.logits.grad is not None and q.codebook.grad is not None
    q.eval()
    assert torch.equal(q(x), q.codebook[nearest])
    # state_dict into a fresh instance of unknown N, then reindex (densify / prune)
    fresh = SoftIndexQuantizer(4, codebook_size=8)
    fresh.load_state_dict(q.state_dict())
    assert torch.equal(fresh.encode(x), q.encode(x))
    fresh.reindex(torch.tensor([0, 0, 5]))
    assert fresh.encode(torch.zeros(3, 4))[:, 0].tolist() == nearest[[0, 0, 5]].tolist()
    with pytest.raises(GsVqError):
        fresh.encode(x)


def test_build_quantizer_rejects_bad_configs():
    with pytest.raises(GsVqError):
        build_quantizer({"type": "nope", "dim": 3})
    with pytest.raises(GsVqError):
        build_quantizer({"type": "pq", "dim": 3, "codebook": 4})
    with pytest.raises(GsVqError):
        build_quantizer({"type": "vq"})
    with pytest.raises(GsVqError):
        build_quantizer({"type": "pq", "dim": 3, "num_subvectors": 4})
    with pytest.raises(GsVqError):
        VectorQuantizer(3, 8).encode(torch.zeros(2, 3))  # not fitted
    with pytest.raises(GsVqError):
        VectorQuantizer(3, 8).fit(torch.zeros(2, 4))  # wrong dim


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", HARD)
def test_quantizers_run_on_cuda(fitted, name):
    x, qs = fitted
    q = copy_of(qs, name)
    q = q.cuda()
    codes = q.encode(x.cuda())
    assert codes.is_cuda and (codes.cpu() == qs[name].encode(x)).float().mean() > 0.95
    fresh = build_quantizer(CONFIGS[name]).cuda().fit(x.cuda())
    assert fresh.mse(x.cuda()) < float(x.square().mean())
