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


def test_multi_index_rate_codes_are_each_index_s_biased_argmin():
    """Residual stages (greedy, each on what the earlier ones leave) and concatenated blocks
    (scalar axes, PQ) each pick the code minimising error + lam x its own stream's length."""
    from gs_vq.quant import build_quantizer
    from gs_vq.quant.rate import rate_codes

    g = torch.Generator().manual_seed(2)
    x = torch.randn(3000, 6, generator=g)
    for spec in ({"type": "rvq", "num_stages": 2, "codebook_size": 32, "beam_size": 1},
                 {"type": "fsq", "levels": 24}, {"type": "pq", "num_subvectors": 2, "codebook_size": 32}):
        q = build_quantizer({**spec, "dim": 6, **({} if spec["type"] == "fsq" else {"seed": 0, "iters": 4})}).fit(x)
        codes, rule = q.encode(x), q.decode_rule
        assert torch.equal(rate_codes(x, q.codebooks, codes, rule, 0.0), codes)  # no rate: plain codes
        lam = float((x - q.decode(codes)).square().sum(1).mean())
        new = rate_codes(x, q.codebooks, codes, rule, lam)
        res, start = x.clone(), 0
        for m, table in enumerate(q.codebooks):
            block = res if rule == "sum" else x[:, start:start + table.shape[1]]
            lengths = code_lengths(codes[:, m], table.shape[0])
            brute = (torch.cdist(block, table).square() + lam * lengths).argmin(dim=1)
            assert (new[:, m] == brute).float().mean() > 0.999  # cdist's rounding on near-ties
            if rule == "sum":
                res = res - table[new[:, m]]
            start += table.shape[1]
        for _ in range(4):  # as refreshes repeat, frequent codes get cheaper still
            new = rate_codes(x, q.codebooks, new, rule, lam)
        before = sum(entropy_bits(codes[:, m], t.shape[0]) for m, t in enumerate(q.codebooks))
        after = sum(entropy_bits(new[:, m], t.shape[0]) for m, t in enumerate(q.codebooks))
        assert after < before - 0.3, (spec, before, after)


def test_the_plugin_prices_each_attribute_by_its_own_rate():
    import pytest

    from gs_vq.errors import GsVqError
    from gs_vq.vq.config import VQConfig
    from gs_vq.vq.fit import build_slots, refresh_slot

    x = torch.randn(4000, 9, generator=torch.Generator().manual_seed(3))
    spec = {"type": "rvq", "num_stages": 2, "codebook_size": 64, "beam_size": 1}
    entropy = {}
    for rate in (0.0, 1.0):
        cfg = VQConfig(attributes={"shN": {**spec, "rate": rate}}, rate=0.5 - rate / 2, max_k_fraction=0.0)
        assert cfg.rate_of("shN") == rate and "rate" not in cfg.quantizer_spec("shN")
        slots, _ = build_slots(cfg, {"shN": x}, {"shN": (3, 3)})
        for _ in range(5):
            codes = refresh_slot(slots["shN"], x, cfg)
        entropy[rate] = sum(entropy_bits(codes[:, m], 64) for m in range(2))
    assert entropy[1.0] < entropy[0.0] - 0.3
    with pytest.raises(GsVqError, match="aq"):
        VQConfig(attributes={"shN": {"type": "aq", "num_codebooks": 2, "codebook_size": 16}}, rate=0.3).validate()
    with pytest.raises(GsVqError, match="rate"):
        VQConfig(attributes={"shN": {**spec, "rate": -1}}).validate()
