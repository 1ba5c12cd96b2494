"""VQ plugin: straight-through gradients, the refresh schedule, consistency under gsplat's
densification ops, pruning, checkpoints and configuration."""

import pytest
import torch
from gsplat.strategy import ops

from gs_vq.errors import GsVqError
from gs_vq.plugins import TrainContext
from gs_vq.vq import CODES_KEY, VQConfig, VQPlugin
from gs_vq.vq.attributes import canonical_quats, to_vectors

SMALL = {"sh0": {"type": "vq", "codebook_size": 16}, "shN": {"type": "vq", "codebook_size": 8},
         "scales": {"type": "vq", "codebook_size": 16}, "quats": {"type": "vq", "codebook_size": 16}}


def make_splats(n=400, seed=0, features=0):
    g = torch.Generator().manual_seed(seed)
    t = {
        "means": torch.randn(n, 3, generator=g),
        "scales": torch.randn(n, 3, generator=g) * 0.3 - 3.0,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 2.0,
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": torch.randn(n, 3, 3, generator=g) * 0.1,
    }
    if features:
        t["features"] = torch.randn(n, features, generator=g)
    splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in t.items()})
    optimizers = {k: torch.optim.Adam([splats[k]], lr=1e-2) for k in splats.keys()}
    return splats, optimizers


def vq_plugin(splats, optimizers, options, **ctx):
    """A VQ plugin from a ``vq:`` mapping, initialised on ``splats`` (TrainContext fields in ctx)."""
    plugin = VQPlugin.from_dict(options)
    plugin.initialize(splats, optimizers, TrainContext(**ctx))
    return plugin


def make_plugin(splats, optimizers, **kw):
    return vq_plugin(splats, optimizers, {"vq_start": 2, "vq_every": 5, "init_iters": 3, "refresh_iters": 2,
                                          "attributes": SMALL, "opacity_reg": 0.0, "prune_opa": 0.0,
                                          "max_k_fraction": 0.0, **kw})


def render_at(plugin, step, splats, optimizers):
    """The plugin's schedule for ``step``, then what it renders."""
    plugin.step_pre_forward(step, splats, optimizers)
    return plugin.splats_to_render(splats)


def train_steps(plugin, splats, optimizers, steps):
    """A toy training loop calling the hooks in the trainer's order."""
    for step in steps:
        over = render_at(plugin, step, splats, optimizers)
        rendered = {**{k: v for k, v in splats.items() if k != CODES_KEY}, **over}
        loss = sum(v.square().mean() for v in rendered.values())
        extra = plugin.loss(step, splats)
        (loss + (extra if extra is not None else 0.0)).backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        plugin.step_post_backward(step, splats, optimizers, None)


def test_nothing_before_vq_start_then_quantized_values():
    splats, opts = make_splats()
    plugin = make_plugin(splats, opts)
    assert render_at(plugin, 0, splats, opts) == {} and render_at(plugin, 1, splats, opts) == {}
    assert CODES_KEY not in splats
    over = render_at(plugin, 2, splats, opts)
    assert set(over) == {"sh0", "shN", "scales", "quats"}
    for name, value in over.items():
        assert value.shape == splats[name].shape
        assert len(torch.unique(to_vectors(name, value.detach()), dim=0)) <= 16  # codewords only
    assert splats[CODES_KEY].shape == (400, 5) and not splats[CODES_KEY].requires_grad


def test_straight_through_gradient_reaches_full_precision_parameters():
    splats, opts = make_splats(features=4)
    plugin = make_plugin(splats, opts, attributes={**SMALL, "features": {"type": "vq", "codebook_size": 8}})
    over = render_at(plugin, 2, splats, opts)
    weights = {k: torch.randn_like(v) for k, v in over.items()}
    sum((weights[k] * v).sum() for k, v in over.items()).backward()
    for name in ("sh0", "shN", "scales", "features"):
        assert torch.allclose(splats[name].grad, weights[name]), name  # identity Jacobian
    # quats: the gradient of the canonical (normalised) quaternion, passed straight through
    q = splats["quats"].detach().clone().requires_grad_(True)
    (weights["quats"] * canonical_quats(q)).sum().backward()
    assert torch.allclose(splats["quats"].grad, q.grad, atol=1e-6)
    assert splats["means"].grad is None and splats["opacities"].grad is None


@pytest.mark.parametrize("start,every", [(2, 5), (0, 1), (3, 4)])
def test_refresh_happens_exactly_every_vq_every_steps(start, every):
    splats, opts = make_splats(n=200)
    plugin = make_plugin(splats, opts, vq_start=start, vq_every=every)
    calls = []
    original = plugin._refresh
    plugin._refresh = lambda s, step: (calls.append(step), original(s, step))
    train_steps(plugin, splats, opts, range(14))
    expected = [s for s in range(14) if s > start and (s - start) % every == 0]
    assert calls == expected == plugin.state.refresh_steps
    # rendering (evaluation, export) never runs the schedule
    plugin.splats_to_render(splats)
    plugin.splats_to_render(splats)
    assert plugin.state.refresh_steps == expected


def test_codes_fixed_between_refreshes_and_codewords_are_member_means():
    splats, opts = make_splats()
    plugin = make_plugin(splats, opts)
    train_steps(plugin, splats, opts, range(0, 3))  # fitted at 2
    codes = splats[CODES_KEY].detach().clone()
    train_steps(plugin, splats, opts, range(3, 7))
    assert torch.equal(codes, splats[CODES_KEY]) and plugin.state.refresh_steps == []
    train_steps(plugin, splats, opts, range(7, 8))  # refresh at 7
    render_at(plugin, 8, splats, opts)  # not a refresh step: codewords <- member means
    slot = plugin.state.slots["sh0"]
    x = to_vectors("sh0", splats["sh0"].detach())
    c = splats[CODES_KEY][:, slot.cols][:, 0]
    table = slot.tables()[0]
    for k in torch.unique(c)[:5]:
        assert torch.allclose(table[k], x[c == k].mean(0), atol=1e-6)
    assert plugin.state.refresh_steps == [7]


def untagged(slot):
    """The slot's columns in the code table without its tag column."""
    return slice(slot.start - 1, slot.start - 1 + slot.num_codes)


def _decoded(plugin, splats):
    return {k: v.detach() for k, v in plugin.quantized(splats).items()}


def test_duplicate_split_remove_keep_indices_consistent():
    splats, opts = make_splats(n=300)
    plugin = make_plugin(splats, opts)
    train_steps(plugin, splats, opts, range(0, 4))
    state = {"grad2d": torch.zeros(300)}
    codes0 = splats[CODES_KEY][:, 1:].clone()
    n0 = len(splats["means"])

    # duplicate: old rows keep their codes, each copy shares its source's codes
    mask = torch.zeros(n0, dtype=torch.bool)
    mask[::7] = True
    ops.duplicate(splats, opts, state, mask)
    plugin.step_post_backward(4, splats, opts, None)
    codes = splats[CODES_KEY][:, 1:]
    src = torch.where(mask)[0]
    assert codes.shape[0] == n0 + len(src) == len(splats["means"]) == len(state["grad2d"])
    untouched = torch.ones(n0, dtype=torch.bool)
    untouched[src] = False
    assert torch.equal(codes[:n0][untouched], codes0[untouched])
    assert torch.equal(codes[n0:], codes[src])
    assert torch.equal(splats[CODES_KEY][:, 0], torch.arange(len(codes)))  # tags renumbered
    assert opts["sh0"].state[splats["sh0"]]["exp_avg"].shape[0] == len(codes)

    # split: the rest keep their codes; children get the codes of their new (halved) values
    codes1 = splats[CODES_KEY][:, 1:].clone()
    n1 = len(codes1)
    mask = torch.zeros(n1, dtype=torch.bool)
    mask[1::5] = True
    rest = torch.where(~mask)[0]
    ops.split(splats, opts, state, mask)
    plugin.step_post_backward(4, splats, opts, None)
    codes = splats[CODES_KEY][:, 1:]
    assert codes.shape[0] == len(splats["means"]) == len(rest) + 2 * int(mask.sum())
    assert torch.equal(codes[: len(rest)], codes1[rest])
    children = slice(len(rest), None)
    for name, slot in plugin.state.slots.items():
        x = to_vectors(name, splats[name].detach())[children]
        assert torch.equal(codes[children][:, untagged(slot)], slot.quantizer.encode(x)), name

    # remove: kept rows keep exactly their codes, in order
    codes2 = splats[CODES_KEY][:, 1:].clone()
    mask = torch.rand(len(codes2), generator=torch.Generator().manual_seed(1)) < 0.3
    ops.remove(splats, opts, state, mask)
    plugin.step_post_backward(5, splats, opts, None)
    assert torch.equal(splats[CODES_KEY][:, 1:], codes2[~mask])
    over = render_at(plugin, 6, splats, opts)
    assert all(v.shape[0] == len(splats["means"]) for v in over.values())
    train_steps(plugin, splats, opts, range(6, 9))  # keeps training, refresh at 7 included
    assert plugin.state.refresh_steps == [7]


def test_relocation_with_n_unchanged_follows():
    """MCMC-style relocation (gsplat's ops.relocate copies live rows onto dead ones; its opacity
    maths needs CUDA, so the copy is done here with the same gsplat helper): N stays, the
    overwritten rows and their sources get codes for their current values, the rest keep theirs."""
    splats, opts = make_splats(n=200)
    plugin = make_plugin(splats, opts)
    train_steps(plugin, splats, opts, range(0, 3))
    codes0 = splats[CODES_KEY][:, 1:].clone()
    dead, src = torch.arange(10), torch.arange(100, 110)

    def param_fn(name, p):
        p = p.detach().clone()
        if name == "scales":
            p[src] -= 0.5  # relocation changes the sources' scales too
        p[dead] = p[src]
        return torch.nn.Parameter(p, requires_grad=p.requires_grad)

    ops._update_param_with_optimizer(param_fn, lambda key, v: v, splats, opts)
    plugin.step_post_backward(3, splats, opts, None)
    codes = splats[CODES_KEY][:, 1:]
    moved = torch.zeros(200, dtype=torch.bool)
    moved[dead] = moved[src] = True
    assert torch.equal(codes[~moved], codes0[~moved])
    for name, slot in plugin.state.slots.items():
        fresh = slot.quantizer.encode(to_vectors(name, splats[name].detach())[moved])
        assert torch.equal(codes[moved][:, untagged(slot)], fresh), name
    assert torch.equal(codes[dead], codes[src])


def test_opacity_regularisation_and_pruning_window():
    splats, opts = make_splats(n=300)
    plugin = make_plugin(splats, opts, opacity_reg=0.01, prune_opa=0.2, prune_window=6, prune_every=2)
    assert plugin.loss(1, splats) is None
    train_steps(plugin, splats, opts, range(0, 3))
    assert plugin.loss(3, splats) is not None and plugin.loss(8, splats) is None
    before = len(splats["means"])
    assert torch.sigmoid(splats["opacities"]).min() < 0.2  # there is something to prune
    train_steps(plugin, splats, opts, range(3, 7))  # prunes at 4 and 6 (window [2, 8))
    assert plugin.state.num_pruned > 0 and len(splats["means"]) == before - plugin.state.num_pruned
    assert torch.sigmoid(splats["opacities"]).min() >= 0.2  # right after a pruning step
    pruned = plugin.state.num_pruned
    train_steps(plugin, splats, opts, range(7, 10))  # past the window: no more pruning
    assert plugin.state.num_pruned == pruned and len(splats["means"]) == before - pruned
    assert splats[CODES_KEY].shape[0] == len(splats["means"])
    for name, opt in opts.items():
        assert opt.state[splats[name]]["exp_avg"].shape[0] == len(splats["means"])


@pytest.mark.parametrize("finalized", [False, True])
def test_state_dict_round_trip(tmp_path, finalized):
    splats, opts = make_splats(n=300)
    plugin = make_plugin(splats, opts)
    train_steps(plugin, splats, opts, range(0, 9))
    if finalized:
        plugin.finalize(splats)
    torch.save(plugin.state_dict(), tmp_path / "vq.pt")
    state = torch.load(tmp_path / "vq.pt", weights_only=True)
    before = _decoded(plugin, splats)
    # a fresh run: splats without the code table, as a checkpoint's float tensors give them back
    fresh = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone())
                                    for k, v in splats.items() if k != CODES_KEY})
    other = make_plugin(fresh, opts)
    other.load_state_dict(state)
    assert other.state.refresh_steps == plugin.state.refresh_steps == [7]
    assert torch.equal(fresh[CODES_KEY], splats[CODES_KEY])
    after = _decoded(other, fresh)
    for k in before:
        assert torch.equal(before[k], after[k])
    assert other.state.frozen == finalized and (other.state.grid == plugin.state.grid)


def test_config_errors_and_attribute_selection():
    with pytest.raises(GsVqError):
        VQConfig.from_dict({"vq_evry": 3})
    with pytest.raises(GsVqError):
        VQConfig.from_dict({"attributes": {"means": {"type": "vq"}}})
    cfg = VQConfig.from_dict({"attributes": {"shN": None, "features": {"type": "rvq", "num_stages": 2}}})
    assert set(cfg.attributes) == {"sh0", "scales", "quats", "features"}
    splats, opts = make_splats(n=100)
    with pytest.raises(GsVqError, match="soft"):  # at start-up, not at vq_start
        vq_plugin(splats, opts, {"attributes": {"shN": {"type": "soft"}}})
    with pytest.raises(GsVqError, match="num_stage"):
        vq_plugin(splats, opts, {"attributes": {"shN": {"type": "rvq", "num_stage": 2}}})
    with pytest.raises(GsVqError, match="none of the configured attributes"):  # nothing to quantize
        vq_plugin(splats, opts, {"attributes": {k: None for k in ("sh0", "shN", "scales", "quats", "features")}})
    # "features" configured but absent from the splats: skipped
    plugin = make_plugin(splats, opts, attributes={**SMALL, "features": {"type": "vq", "codebook_size": 4}})
    assert "features" not in render_at(plugin, 2, splats, opts)


def test_codebooks_capped_for_small_scenes():
    splats, opts = make_splats(n=1000)
    plugin = vq_plugin(splats, opts, {"vq_start": 0, "init_iters": 2})  # Compact3D sizes
    render_at(plugin, 0, splats, opts)
    sizes = {k: s.quantizer.codebook_sizes[0] for k, s in plugin.state.slots.items()}
    assert sizes == {"sh0": 62, "shN": 62, "scales": 62, "quats": 62}  # N/16
    assert plugin.state.slots["sh0"].spec["codebook_size"] == 62


@pytest.mark.parametrize("kind,spec", [
    ("rvq", {"type": "rvq", "num_stages": 2, "codebook_size": 8, "beam_size": 2}),
    ("pq", {"type": "pq", "num_subvectors": 3, "codebook_size": 8}),
    ("fsq", {"type": "fsq", "levels": 8}),
])
def test_other_quantizers_train_and_decode_like_the_file(kind, spec):
    splats, opts = make_splats(n=200)
    plugin = make_plugin(splats, opts, attributes={**SMALL, "shN": spec})
    train_steps(plugin, splats, opts, range(0, 8))
    slot = plugin.state.slots["shN"]
    codes = splats[CODES_KEY][:, slot.cols]
    assert torch.allclose(slot.decode(codes), slot.quantizer.decode(codes), atol=1e-5)
    assert slot.combine == ("concat" if kind in ("pq", "fsq") else "sum")


def test_canonical_quats_is_normalize_with_a_non_negative_real_part():
    """One pass (divide by +-|q|) against the textbook form: F.normalize, then flip w < 0."""
    q = torch.randn(500, 4, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    ref = torch.nn.functional.normalize(q, dim=-1)
    ref = ref * torch.where(ref[:, :1].detach() < 0, -1.0, 1.0)
    out = canonical_quats(q)
    assert torch.equal(out, ref) and (out[:, 0] >= 0).all()
    g = torch.randn(500, 4)
    assert torch.allclose(torch.autograd.grad(out, q, g)[0], torch.autograd.grad(ref, q, g)[0], atol=1e-7)


@pytest.mark.parametrize("combine,sizes,widths", [("sum", (256, 256), (45, 45)), ("sum", (7, 3, 5), (4, 4, 4)),
                                                  ("concat", (48, 48, 48), (1, 1, 1)), ("concat", (9, 4), (2, 3)),
                                                  ("sum", (16,), (3,))])
def test_decode_codes_is_the_per_book_gather_summed_in_order(combine, sizes, widths):
    """The fused gather (embedding_bag / one stacked embedding) gives bit for bit what
    index_select per codebook, added in order m = 0..M-1 (or concatenated), gives."""
    from gs_vq.io.scene import decode_codes

    g = torch.Generator().manual_seed(0)
    books = [torch.randn(k, d, generator=g) * 10.0 ** -m for m, (k, d) in enumerate(zip(sizes, widths))]
    codes = torch.stack([torch.randint(0, k, (1000,), generator=g) for k in sizes], dim=1)  # [N, M]
    parts = [b.index_select(0, codes[:, m]) for m, b in enumerate(books)]
    if combine == "concat":
        ref = torch.cat(parts, dim=-1)
    else:
        ref = parts[0]
        for p in parts[1:]:
            ref = ref + p
    assert torch.equal(decode_codes(books, codes, combine), ref)


class _RecordOps(torch.utils._python_dispatch.TorchDispatchMode):
    """The aten ops a block runs (CPU shows what would read back from a CUDA device)."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


# ops whose result size or value the host must read: each is a CUDA sync
HOST_READS = {"aten.nonzero", "aten.bincount", "aten._local_scalar_dense", "aten._unique2", "aten.masked_select"}


def _plugin_with_dropped_sh(splats, opts, **kw):
    """Fitted, with SH degree 0 on every third Gaussian and shN in two residual stages."""
    from gs_vq.vq.codes import SH_DEGREES_KEY

    attributes = {**SMALL, "shN": {"type": "rvq", "num_stages": 2, "codebook_size": 8, "beam_size": 1}}
    plugin = make_plugin(splats, opts, attributes=attributes, **kw)
    train_steps(plugin, splats, opts, range(0, 3))  # fitted at 2
    degrees = torch.full((splats["means"].shape[0],), 3, dtype=torch.int64)
    degrees[::3] = 0
    splats[SH_DEGREES_KEY] = torch.nn.Parameter(degrees, requires_grad=False)
    return plugin


@pytest.mark.parametrize("weighted", [False, True])
def test_codebook_update_step_reads_nothing_back_to_the_host(weighted):
    """A step between refreshes (sync + codebook update) runs no op that makes a CUDA device wait
    for the host: no bincount, boolean indexing (nonzero), unique or .item()."""
    splats, opts = make_splats()
    plugin = _plugin_with_dropped_sh(splats, opts, weighted=["shN", "sh0"] if weighted else [])
    assert plugin.schedule.action(3, True) == "update"
    with _RecordOps() as rec:
        plugin.step_pre_forward(3, splats, opts)
    assert rec.ops & HOST_READS == set()
    assert "aten.index_add_" in rec.ops  # the update did run


def test_dropped_rows_weigh_nothing_in_the_codebook_update():
    """Weight 0 on the Gaussians without shN gives the codebooks that filtering them out gives."""
    from gs_vq.vq.codes import SH_DEGREES_KEY

    splats, opts = make_splats()
    plugin = _plugin_with_dropped_sh(splats, opts)
    slot = plugin.state.slots["shN"]
    keep = splats[SH_DEGREES_KEY] > 0
    x = to_vectors("shN", splats["shN"].detach())
    codes = splats[CODES_KEY][:, slot.cols]
    ref = [t.clone() for t in slot.tables()]
    import copy

    q = copy.deepcopy(slot.quantizer)
    q.update_codebooks_from_assignments(x[keep], codes[keep])
    plugin._update_codebooks(splats)
    for mine, theirs in zip(slot.tables(), q.codebooks):
        assert torch.allclose(mine, theirs, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(ref, slot.tables()))  # it did move


def test_the_plugin_holds_its_config_state_and_run_only():
    """No hidden references: after initialize the instance holds its config fields, what it learns
    (state), what the trainer gave it (run), its schedule and its code table, nothing else."""
    import dataclasses

    from gs_vq.vq.state import VQRun

    splats, opts = make_splats()
    strategy_state = {"grad2d": torch.zeros(400)}
    plugin = VQPlugin.from_dict({"vq_start": 2, "attributes": SMALL, "max_k_fraction": 0.0})
    plugin.initialize(splats, opts, TrainContext(strategy_state=strategy_state, refine_stop=7))
    fields = {f.name for f in dataclasses.fields(plugin)}
    assert set(vars(plugin)) - fields == {"state", "run", "schedule", "codes"}
    assert isinstance(plugin.run, VQRun) and plugin.run.splats is splats
    assert plugin.run.strategy_state is strategy_state and plugin.run.refine_stop == 7
