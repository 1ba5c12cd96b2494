"""Config precedence: defaults < YAML preset < explicit flags; bad keys and values fail clearly."""

import pytest

from gs_vq.cli.train import parse_config
from gs_vq.config import load_config, make_config, save_config
from gs_vq.errors import GsVqError


def test_precedence(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("iterations: 123\nsh_degree: 1\nstrategy:\n  refine_every: 50\n")
    cfg, _ = parse_config(["--config", str(preset), "--iterations", "7"])
    assert cfg.iterations == 7  # flag wins
    assert cfg.sh_degree == 1  # from the file
    assert cfg.strategy.refine_every == 50 and cfg.strategy.reset_every == 3000  # nested merge
    assert cfg.vq is None and cfg.semantic is None


def test_named_preset_and_flags():
    cfg, _ = parse_config(["--config", "cpu", "-r", "4", "--vq"])
    assert cfg.resolution == 4 and cfg.iterations > 0 and cfg.vq.vq_every == 100  # Compact3D defaults


def test_quantizer_spec_replaces_the_base_one(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("base: vq\nvq:\n  vq_every: 7\n  attributes:\n    shN: {type: vq, codebook_size: 32}\n")
    vq = make_config(str(preset)).vq
    assert vq.vq_every == 7 and vq.pos_bits == make_config("vq").vq.pos_bits  # merged
    assert vq.attributes["shN"] == {"type": "vq", "codebook_size": 32}  # replaced whole
    assert make_config("vq").vq.attributes["shN"]["num_stages"] == 3
    assert make_config("vq_small").vq.attributes["shN"] == {"type": "rvq", "num_stages": 2, "codebook_size": 128,
                                                            "beam_size": 1, "codebook_step": 2.0**-7}  # its own entry wins
    assert make_config("vq_tiny").vq.attributes["shN"]["codebook_size"] == 128  # inherited through vq_small


def test_save_load_round_trip(tmp_path):
    cfg = make_config("cpu", {"source_path": "x", "resolution": 2})
    save_config(cfg, str(tmp_path / "cfg.yaml"))
    assert load_config(str(tmp_path / "cfg.yaml")) == cfg


def test_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("iteratons: 5\n")
    with pytest.raises(GsVqError, match="unknown config key 'iteratons'"):
        make_config(str(bad))
    with pytest.raises(GsVqError, match="resolution"):
        make_config(None, {"resolution": 3})
    with pytest.raises(GsVqError, match="not found"):
        make_config("no_such_preset")
