"""Config precedence: defaults < YAML preset < explicit flags; bad keys and values fail clearly."""

import pytest

from gs_vq.cli.train import parse_config
from gs_vq.config import load_config, make_config, save_config, scale_steps
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
    assert cfg.resolution == 4 and cfg.iterations > 0 and cfg.vq.level == "default"
    assert cfg.vq.prune_fraction == 0.6 and cfg.vq.vq_every == 7  # 1/150 of the 1000-step window
    cfg, _ = parse_config(["--config", "cpu", "--vq", "compact3d"])
    assert cfg.vq.prune_fraction == 0.0 and cfg.vq.attributes["quats"] == {"type": "vq", "codebook_size": 4096}
    cfg, _ = parse_config(["--config", "cpu"])
    assert cfg.vq is None


def test_levels_resolve_on_any_schedule(tmp_path):
    """A level's step settings are fractions of the quantization window: gsplat's 30k schedule
    refreshes every 100 steps (Compact3D's interval) and prunes in its window; cfg.yaml records
    the resolved steps and loads back to the same config."""
    from gs_vq.config import to_dict

    gpu, _ = parse_config(["--config", "gpu", "--vq"])
    assert gpu.iterations == 30000 and gpu.strategy.refine_stop_iter == 15000
    vq = gpu.vq
    assert (vq.vq_every, vq.prune_window, vq.prune_every, vq.prune_rounds) == (100, 7500, 1500, 3)
    assert vq.prune_fraction == 0.6 and vq.sh_drop == 0.3 and vq.attributes["shN"]["num_stages"] == 2 and vq.pos_bits == 11
    mcmc, _ = parse_config(["--config", "mcmc", "--vq", "small"])  # window 2500..3000
    assert (mcmc.vq.vq_every, mcmc.vq.prune_every, mcmc.vq.prune_fraction) == (3, 50, 0.74)
    save_config(gpu, str(tmp_path / "cfg.yaml"))
    text = (tmp_path / "cfg.yaml").read_text()
    assert "vq_every: 100" in text and "prune_every: 1500" in text and "level: default" in text
    assert to_dict(load_config(str(tmp_path / "cfg.yaml"))) == to_dict(gpu)
    short = scale_steps(gpu, 0.1)  # 3000 steps, window 1500: every 10
    assert (short.vq.vq_every, short.vq.prune_every) == (10, 150)


def test_level_in_a_yaml_with_single_keys_and_pointers(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("base: gpu\nvq:\n  level: small\n  prune_fraction: 0.7\n")
    cfg = make_config(str(preset))
    assert cfg.vq.level == "small" and cfg.vq.prune_fraction == 0.7 and cfg.vq.sh_drop == 0.6
    assert cfg.vq.vq_every == 100  # the level's window fraction on the 30k schedule
    cfg, _ = parse_config(["--config", str(preset), "--vq", "tiny"])  # the file's keys over the level
    assert cfg.vq.level == "tiny" and cfg.vq.prune_fraction == 0.7 and cfg.vq.sh_drop == 1.0
    for old, pointer in (("vq", "--vq"), ("vq_small", "--vq small"), ("compact3d", "--vq compact3d")):
        with pytest.raises(GsVqError, match=f"use {pointer} with any --config"):
            make_config(old)
    with pytest.raises(GsVqError, match="unknown compression level 'huge'"):
        parse_config(["--vq", "huge"])
    with pytest.raises(GsVqError, match="vq.window.vq_every must be a fraction"):
        make_config("cpu", {"vq": {"window": {"vq_every": 2.0}}})
    with pytest.raises(GsVqError, match="vq.window.pos_bits: only"):
        make_config("cpu", {"vq": {"window": {"pos_bits": 0.5}}})


def test_quantizer_spec_replaces_the_base_one(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("base: cpu\nvq:\n  level: default\n  pos_bits: 9\n  attributes:\n"
                      "    shN: {type: vq, codebook_size: 32}\n")
    vq = make_config(str(preset)).vq
    level = lambda name: make_config("cpu", {"vq": {"level": name}}).vq  # noqa: E731
    assert vq.pos_bits == 9 and vq.sh_drop == level("default").sh_drop  # merged
    assert vq.attributes["shN"] == {"type": "vq", "codebook_size": 32}  # replaced whole
    assert level("default").attributes["shN"]["codebook_size"] == 256
    assert level("small").attributes["shN"] == {"type": "rvq", "num_stages": 2, "codebook_size": 128,
                                                "beam_size": 1, "codebook_step": 2.0**-7, "rate": 0.0}  # its own entry wins
    assert level("tiny").attributes["shN"]["codebook_size"] == 128  # inherited through small


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


def test_named_presets_take_their_gpu_form_on_cuda():
    from gs_vq.presets import device_form

    assert device_form("mcmc", "cpu") == ("mcmc", None)
    name, note = device_form("mcmc", "cuda")
    assert name == "mcmc_gpu" and "GPU form" in note
    assert device_form("semantic", "cuda")[0] == "semantic_gpu"
    assert device_form("cpu", "cuda") == ("cpu", None)  # no GPU form: as asked
    mcmc, _ = parse_config(["--config", "mcmc_gpu", "--vq"])  # what --config mcmc --vq resolves to on CUDA
    assert mcmc.iterations == 30000 and type(mcmc.strategy).__name__ == "MCMCStrategy" and mcmc.strategy.cap_max == 1_000_000
    assert (mcmc.init_opacity, mcmc.init_scale, mcmc.strategy.refine_stop_iter) == (0.5, 0.1, 25000)
    assert mcmc.vq.vq_start is None and mcmc.vq.vq_every == round(5000 / 150)  # starts at refine_stop_iter
    sem, _ = parse_config(["--config", "semantic_gpu"])
    assert sem.iterations == 30000 and sem.semantic.feature_dim == 8


def test_every_nested_field_is_a_flag():
    """--SECTION.FIELD VALUE sets one field of the tree, as the YAML key would (values read as YAML)."""
    cfg, _ = parse_config(["--config", "mcmc", "--vq", "--vq.prune_fraction", "0.5", "--strategy.cap_max=1234",
                           "--vq.attributes.sh0.codebook_size", "512", "--vq.export_supersplat", "true"])
    vq = cfg.plugins["vq"]
    assert vq.prune_fraction == 0.5 and vq.export_supersplat is True and vq.level == "default"
    assert vq.attributes["sh0"]["codebook_size"] == 512 and vq.attributes["sh0"]["type"] == "vq"
    assert cfg.strategy.cap_max == 1234


@pytest.mark.parametrize("argv,message", [
    (["--vq.no_such_field", "1"], "no_such_field"),
    (["--vq.prune_fraction"], "needs a value"),
    (["--vq.prune_fraction", "7"], "prune_fraction"),
    (["--nonsense", "1"], "unrecognized argument --nonsense"),
    (["--vq.prune_fraction", "[1,"], "not a YAML value"),
])
def test_a_bad_nested_flag_is_one_error_line(argv, message, capsys):
    from gs_vq.errors import GsVqError

    try:
        parse_config(["--config", "cpu", "--vq", *argv])
    except GsVqError as e:
        text = str(e)
    except SystemExit as e:
        assert e.code == 2
        text = capsys.readouterr().err
        assert text.startswith("error: ") and text.count("\n") == 1
    assert message in text
