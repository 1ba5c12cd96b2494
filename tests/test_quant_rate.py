"""Entropy-constrained assignment: the biased search equals brute force, and a rate term trades
distortion for index entropy."""

import torch

from gs_vq.quant import kmeans
from gs_vq.quant.rate import code_lengths, ecvq_step, entropy_bits, rate_assign


def test_rate_assign_is_the_biased_argmin():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(500, 3, generator=g), torch.randn(40, 3, generator=g)
    lengths = torch.rand(40, generator=g) * 8
    for lam in (0.0, 0.05, 0.5):
        brute = (torch.cdist(x, c).square() + lam * lengths).argmin(dim=1)
        assert torch.equal(rate_assign(x, c, lengths, lam), brute)


def test_code_lengths_and_entropy():
    codes = torch.tensor([0, 0, 0, 1])
    bits = code_lengths(codes, 3)
    assert bits[0] < bits[1] < bits[2]  # frequent codes are cheaper; unused ones finite
    assert abs(entropy_bits(codes, 3) - 0.8112781) < 1e-6
    assert entropy_bits(torch.zeros(10, dtype=torch.long), 4) == 0.0


def test_a_rate_term_lowers_entropy_at_some_distortion():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 3, generator=g)
    r = kmeans(x, 64, iters=10, seed=0)
    results = []
    for rate in (0.0, 0.2, 1.0):
        c, codes = r.centroids.clone(), r.assignments.clone()
        for _ in range(5):
            c, codes = ecvq_step(x, c, codes, rate)
        mse = (x - c[codes]).square().sum(dim=1).mean().item()
        results.append((entropy_bits(codes, 64), mse))
    (h0, d0), (h1, d1), (h2, d2) = results
    assert h2 < h1 < h0 and d0 < d1 < d2
    assert h0 > 5.5 and h2 < h0 - 0.5  # a real saving, not rounding


def test_repeated_ecvq_steps_with_a_fixed_scale_do_not_collapse():
    """Training refreshes codes every few steps; pricing bits against the *current* error
    makes each step dearer than the last and the codes collapse onto one entry. With the scale
    fixed at the plain distortion the entropy settles."""
    from gs_vq.quant import kmeans
    from gs_vq.quant.rate import ecvq_step, entropy_bits

    x = torch.randn(8000, 3, generator=torch.Generator().manual_seed(0))
    r = kmeans(x, 128, iters=8, seed=0)
    scale = float((x - r.centroids[r.assignments]).square().sum(1).mean())
    runs = {}
    for fixed in (False, True):
        c, codes = r.centroids.clone(), r.assignments.clone()
        for _ in range(40):
            c, codes = ecvq_step(x, c, codes, 1.0, scale if fixed else None)
        runs[fixed] = (entropy_bits(codes, 128), float((x - c[codes]).square().sum(1).mean()))
    assert runs[False][0] < 1.0  # the feedback loop: (almost) one code left
    assert runs[True][0] > 4.5 and runs[True][1] < 3 * scale  # settles at a finite rate and distortion
