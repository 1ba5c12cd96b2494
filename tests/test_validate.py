"""Start-up config checks: types, ranges and finiteness of every value (gs_vq.fields), base: loops."""

import dataclasses
from typing import Dict, Optional

import pytest

from gs_vq.config import make_config, read_preset
from gs_vq.errors import GsVqError
from gs_vq.fields import Int, LR, check_ranges, entries, ranged, ranged_by


def preset(tmp_path, text: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("yaml_text,msg", [
    ("iterations: abc", "iterations: expected int"),
    ("iterations: 2.5", "iterations: expected int"),
    ("strategy: 5", "strategy must be a mapping"),
    ("vq: 5", "vq must be a mapping"),
    ("sh_degree: -1", "sh_degree must be an integer >= 0 and <= 3"),
    ("sh_degree: 4", "sh_degree"),
    ("sh_degree_interval: 0", "sh_degree_interval must be an integer >= 1"),
    ("scales_lr: -0.001", "scales_lr must be a finite number >= 0"),
    ("scales_lr: 1000.0", "scales_lr must be a finite number >= 0 and <= 1"),
    ("means_lr: .nan", "means_lr must be finite"),
    ("opacities_lr: .inf", "opacities_lr must be finite"),
    ("ssim_lambda: 1.5", "ssim_lambda"),
    ("init_opacity: 0", "init_opacity"),
    ("checkpoint_every: -1", "checkpoint_every"),
    ("strategy: {reset_every: 0}", "strategy.reset_every must be an integer >= 1"),
    ("strategy: {prune_opa: -1}", "strategy.prune_opa"),
    ("vq: {attributes: {sh0: {type: vq, codebook_size: 0}}}", "vq.attributes.sh0.codebook_size must be an integer >= 2"),
    ("vq: {attributes: {sh0: {type: vq, codebook_size: 1}}}", "codebook_size"),
    ("vq: {attributes: {scales: {type: fsq, levels: [64, 1, 64]}}}", "vq.attributes.scales.levels"),
    ("vq: {pos_bits: 40}", "vq.pos_bits"),
    ("vq: {opacity_bits: 0}", "vq.opacity_bits"),
    ("vq: {vq_evry: 3}", "vq_evry"),  # the plugin's own unknown-key check runs at start-up
    ("semantic: {num_codes: 1}", "semantic.num_codes must be an integer >= 2"),
    ("semantic: {decoder_lr: -1}", "semantic.decoder_lr"),
])
def test_bad_values_are_one_line_errors(tmp_path, yaml_text, msg):
    with pytest.raises(GsVqError, match=msg.replace("[", r"\[")) as e:
        make_config(preset(tmp_path, yaml_text))
    assert "\n" not in str(e.value)


def test_every_shipped_preset_passes():
    from gs_vq.config import preset_names
    from gs_vq.vq.levels import level_names

    names = preset_names()
    assert {"cpu", "gpu", "mcmc", "semantic", "semantic_only", "semantic_lift"} <= set(names)
    assert level_names() == ["compact3d", "default", "small", "tiny"]
    for name in names:
        for level in [None] + level_names():
            make_config(name, {"vq": {"level": level}} if level else None)
    make_config(None, {"vq": {"pos_bits": 32, "opacity_bits": 32}})  # lossless is allowed


def test_base_loop_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(GsVqError, match="loop"):
        read_preset(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text(f"base: {tmp_path / 'c.yaml'}\n")
    with pytest.raises(GsVqError, match="loop"):
        make_config(str(tmp_path / "c.yaml"))


def test_ranges_come_from_the_fields_that_declare_them():
    """A field declares its range (metadata); a foreign dataclass gets rules by name from the field
    holding it; entries of a mapping follow rules by option name. Nothing else is checked by name."""

    @dataclasses.dataclass
    class Foreign:  # like gsplat's strategies: no metadata of ours
        refine_every: int = 100
        codebook_size: int = 16

    @dataclasses.dataclass
    class Section:
        decoder_lr: float = dataclasses.field(default=1e-3, metadata=ranged(LR))
        other_lr: float = 5.0  # declares nothing: only finiteness
        foreign: Foreign = dataclasses.field(default_factory=Foreign, metadata=ranged_by({"refine_every": Int(1)}))
        attributes: Optional[Dict] = dataclasses.field(default=None, metadata=entries({"codebook_size": Int(2)}))

    check_ranges(Section(attributes={"sh0": {"codebook_size": 4}}, foreign=Foreign(codebook_size=0)), "s.")
    with pytest.raises(GsVqError, match="s.foreign.refine_every must be an integer >= 1"):
        check_ranges(Section(foreign=Foreign(refine_every=0)), "s.")
    with pytest.raises(GsVqError, match="s.attributes.sh0.codebook_size"):
        check_ranges(Section(attributes={"sh0": {"codebook_size": 1}}), "s.")
    with pytest.raises(GsVqError, match="decoder_lr must be a finite number >= 0 and <= 1"):
        check_ranges(Section(decoder_lr=2.0), "s.")
    with pytest.raises(GsVqError, match="other_lr must be finite"):
        check_ranges(Section(other_lr=float("nan")), "s.")


def test_no_range_is_checked_by_hand_twice():
    """The VQ plugin's own checks are only those no single field can state."""
    import inspect

    from gs_vq.vq.config import VQConfig

    source = inspect.getsource(VQConfig.validate)
    for name in ("pos_bits", "opacity_bits", "vq_every", "prune_rounds", "refresh_iters", "codebook_mantissa"):
        assert f"self.{name} <" not in source and f"<= self.{name}" not in source, name
    with pytest.raises(GsVqError, match="vq.prune_rounds must be an integer >= 1"):
        VQConfig.from_dict({"prune_rounds": 0})
    with pytest.raises(GsVqError, match="iterations must be an integer >= 1"):
        make_config(None, {"iterations": 0})
