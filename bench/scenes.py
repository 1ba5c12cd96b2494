"""The real scenes the benchmarks train on (../shared/data beside the project root) and their CPU settings."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
SCENES = {
    "lego": dict(resolution=4, white_background=True),
    "fern": dict(resolution=2, white_background=False),
}

# benchmark rows: name -> (training preset, vq: section or None). Levels are gs_vq/configs/vq/*.yaml;
# the "_p" rows are the candidates the levels' pruning share is chosen among (on training views).
ROWS = {
    "cpu": ("cpu", None),
    "default": ("cpu", {"level": "default"}),
    "small": ("cpu", {"level": "small"}),
    "tiny": ("cpu", {"level": "tiny"}),
    "compact3d": ("cpu", {"level": "compact3d"}),
    "default_p50": ("cpu", {"level": "default", "prune_fraction": 0.5}),
    "small_p65": ("cpu", {"level": "small", "prune_fraction": 0.65}),
    "default_sh0_2048": ("cpu", {"level": "default", "attributes": {"sh0": {"codebook_size": 2048}}}),
    "default_pos11": ("cpu", {"level": "default", "pos_bits": 11}),  # candidates for re-choosing on training views
    "default_opa5": ("cpu", {"level": "default", "opacity_bits": 5}),
    "default_shN2": ("cpu", {"level": "default", "attributes": {"shN": {"num_stages": 2}}}),
    "default_scale32": ("cpu", {"level": "default", "attributes": {"scales": {"levels": 32}}}),
    "default_quat256": ("cpu", {"level": "default", "attributes": {"quats": {"codebook_size": 256}}}),
    "small_sh0_2048": ("cpu", {"level": "small", "attributes": {"sh0": {"codebook_size": 2048}}}),
    "small_pos10": ("cpu", {"level": "small", "pos_bits": 10}),
    "small_opa4": ("cpu", {"level": "small", "opacity_bits": 4}),
    "small_quat128": ("cpu", {"level": "small", "attributes": {"quats": {"codebook_size": 128}}}),
    # the training-view winners of both rounds together (small's only winner is small_sh0_2048);
    # adopted into the levels, so the candidate rows above now compare against the new levels
    "default_c2": ("cpu", {"level": "default", "pos_bits": 11, "opacity_bits": 5,
                           "attributes": {"sh0": {"codebook_size": 2048}, "shN": {"num_stages": 2}}}),
    "default_w": ("cpu", {"level": "default", "weighted": ["sh0", "shN"]}),  # importance-weighted SH codewords
    "small_rate": ("cpu", {"level": "small", "attributes": {  # the rate term on every attribute
        name: {"rate": 0.3} for name in ("shN", "scales", "quats")}}),
    "mcmc": ("mcmc", None),
    "mcmc_default": ("mcmc", {"level": "default"}),  # MCMC (cap 50k) with significance pruning
    "mcmc_cap20k": ("mcmc", {"level": "default", "prune_fraction": 0.0}),  # the cap holds the count instead
}
ROW_OVERRIDES = {"mcmc_cap20k": {"strategy": {"cap_max": 20000}}}


def row_config(row: str, overrides: dict):
    """The training config of benchmark row ``row`` (a ROWS name) with ``overrides``."""
    from gs_vq.config import make_config

    preset, vq = ROWS[row]
    extra = dict(ROW_OVERRIDES.get(row, {}))
    if vq is not None:
        extra["vq"] = vq
    return make_config(preset, {**overrides, **extra})
