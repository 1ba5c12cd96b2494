"""Exports for other viewers: .spz written and read back (Niantic's layout), gsplat's .splat and
SuperSplat compressed ply read back by our readers, renders of the decoded Gaussians close to
the original, and the ``python -m gs_vq.export`` command."""

import gzip
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gs_vq.export import export_bytes, export_file
from gs_vq.io import load_splats, save_ply
from gs_vq.io.spz import SH_FLIP, spz_to_splats, splats_to_spz
from gs_vq.render.synthetic import random_scene
from gs_vq.splats import render_splats

ROOT = Path(__file__).resolve().parents[1]


def raw_scene(n: int = 2000, degree: int = 3, seed: int = 0):
    """Raw (pre-activation) splats of a random scene, plus the camera to render it."""
    s = random_scene(n, width=96, height=96, sh_degree=degree, seed=seed)
    splats = {"means": s["means"], "scales": torch.log(s["scales"]), "quats": s["quats"],
              "opacities": torch.logit(s["opacities"]), "sh0": s["colors"][:, :1].contiguous(),
              "shN": s["colors"][:, 1:].contiguous()}
    return splats, s["viewmats"], s["Ks"]


def render(splats, viewmats, Ks):
    degree = int(round(math.sqrt(1 + splats["shN"].shape[1]))) - 1
    return render_splats(splats, viewmats, Ks, 96, 96, degree, background=[0.0, 0.0, 0.0], backend="torch").rgb[0]


def psnr(a, b) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_spz_round_trip_and_layout(degree):
    splats, viewmats, Ks = raw_scene(degree=degree)
    n = len(splats["means"])
    data = splats_to_spz(splats, sort=False)  # file order = our order, for the element-wise checks
    raw = gzip.decompress(data)
    magic, version, count, sh_degree, frac, flags, _ = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, count, sh_degree, frac, flags) == (0x5053474E, 3, n, degree, 12, 0)
    dim = (degree + 1) ** 2 - 1
    assert len(raw) == 16 + n * (9 + 1 + 3 + 3 + 4 + 3 * dim)
    # positions are stored in RUB axes: (x, -y, -z) as 24-bit fixed point with 12 fractional bits
    p = np.frombuffer(raw, np.uint8, 9 * n, 16).reshape(n, 3, 3).astype(np.int64)
    fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    fixed = np.where(fixed >= 1 << 23, fixed - (1 << 24), fixed)
    np.testing.assert_allclose(fixed / 4096.0, splats["means"].numpy() * [1, -1, -1], atol=1.5 / 4096)

    back = spz_to_splats(data)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in splats.items()}
    assert (back["means"] - splats["means"]).abs().max() <= 1 / 4096
    assert (back["scales"] - splats["scales"]).abs().max() <= 1 / 32 + 1e-6
    q0 = torch.nn.functional.normalize(splats["quats"], dim=1)
    assert (q0 * back["quats"]).sum(1).abs().min() > 0.999  # same rotation (up to sign)
    assert (torch.sigmoid(back["opacities"]) - torch.sigmoid(splats["opacities"])).abs().max() <= 0.5 / 255 + 1e-6
    assert (back["sh0"] - splats["sh0"]).abs().max() <= 0.5 / (0.15 * 255) + 1e-6
    if degree:
        assert (back["shN"] - splats["shN"]).abs().max() <= 8.5 / 128  # 4-bit buckets of 16 / 128
    # the decoded Gaussians render like the originals (a wrong axis flip of SH or rotations would not)
    assert psnr(render(back, viewmats, Ks), render(splats, viewmats, Ks)) > 30
    # Morton order (the default): the same Gaussians, in another order, in a smaller file
    sorted_data = splats_to_spz(splats)
    again = spz_to_splats(sorted_data)
    assert len(sorted_data) < len(data) and not torch.equal(again["means"], back["means"])
    torch.testing.assert_close(again["means"].sort(0).values, back["means"].sort(0).values)


def test_spz_sh_flip_is_the_y_z_mirror_of_gsplat_sh():
    """SH_FLIP[k] is the sign SH basis k takes under (x, y, z) -> (x, -y, -z)."""
    from gs_vq.render.projection import sh_colors

    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=1)
    coeffs = torch.randn(64, 16, 3, generator=g)
    flipped = coeffs.clone()
    flipped[:, 1:] *= torch.from_numpy(SH_FLIP)[:, None]
    eye = torch.eye(4)[None]
    # colours seen along d with the original coefficients == along the mirrored d with flipped ones
    a = sh_colors(3, -dirs, coeffs, eye)  # means at -d, camera at the origin: view dir d
    b = sh_colors(3, -dirs * torch.tensor([1.0, -1.0, -1.0]), flipped, eye)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_spz_rejects_bad_input():
    from gs_vq.errors import GsVqError

    with pytest.raises(GsVqError, match="gzip"):
        spz_to_splats(b"not a gzip stream")
    with pytest.raises(GsVqError, match="magic"):
        spz_to_splats(gzip.compress(b"\0" * 64))
    splats, _, _ = raw_scene(n=10)
    with pytest.raises(GsVqError, match="cannot hold"):
        spz_to_splats(gzip.compress(gzip.decompress(splats_to_spz(splats))[:-5]))
    far = dict(splats, means=splats["means"] + 5000.0)
    with pytest.raises(GsVqError, match="positions within"):
        splats_to_spz(far)


def test_gsplat_exports_read_back(tmp_path):
    splats, viewmats, Ks = raw_scene(n=257 + 256)  # the last chunk of SuperSplat's file holds one Gaussian
    splats["opacities"][:3] = -10.0  # below 1/255: SuperSplat's exporter drops them
    ref = render(splats, viewmats, Ks)
    # .splat: every Gaussian, degree-0 colour
    export_file(splats, "splat", str(tmp_path / "a.splat"))
    s = load_splats(str(tmp_path / "a.splat"))
    assert len(s["means"]) == len(splats["means"]) and s["shN"].shape[1] == 0
    order = torch.cdist(s["means"], splats["means"]).argmin(1)  # .splat sorts by Morton code
    torch.testing.assert_close(s["means"], splats["means"][order])
    assert (s["scales"] - splats["scales"][order]).abs().max() < 1e-5
    # SuperSplat's compressed ply: Gaussians above 1/255 opacity, 11/10/11-bit positions inside chunks
    export_file(splats, "ply_compressed", str(tmp_path / "a.compressed.ply"))
    c = load_splats(str(tmp_path / "a.compressed.ply"))
    kept = splats["means"][3:]
    assert len(c["means"]) == len(kept)
    order = torch.cdist(c["means"], kept).argmin(1)
    assert len(set(order.tolist())) == len(kept)  # every kept Gaussian decoded near itself
    extent = (kept.max(0).values - kept.min(0).values).max()
    assert (c["means"] - kept[order]).abs().max() < 1e-3 * extent + 1e-6
    assert psnr(render(c, viewmats, Ks), ref) > 28
    # the standard ply through gsplat: exact
    export_file(splats, "ply", str(tmp_path / "a.ply"))
    p = load_splats(str(tmp_path / "a.ply"))
    for k in splats:
        torch.testing.assert_close(p[k], splats[k])


def test_export_bytes_rejects_unknown_format():
    from gs_vq.errors import GsVqError

    with pytest.raises(GsVqError, match="unknown export format"):
        export_bytes(raw_scene(n=4)[0], "obj")


def test_export_cli(tmp_path, capsys):
    from gs_vq.export import main

    model = tmp_path / "model"
    splats, _, _ = raw_scene(n=300, degree=1)
    save_ply(splats, str(model / "point_cloud.ply"))
    # once as a user runs it
    r = subprocess.run([sys.executable, "-m", "gs_vq.export", "-m", str(model), "--format", "spz"],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["output"] == str(model / "export" / "point_cloud.spz")
    sizes = {}
    for fmt, name in [("ply", "point_cloud.ply"), ("splat", "point_cloud.splat"),
                      ("ply_compressed", "point_cloud.compressed.ply"), ("spz", "point_cloud.spz")]:
        main(["-m", str(model), "--format", fmt])
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert Path(out["output"]) == model / "export" / name and out["num_gaussians_written"] == 300
        assert (model / "export" / name).stat().st_mode & 0o044 == 0o044  # readable by others, like any file
        sizes[fmt] = out["bytes"]
    assert sizes["spz"] < sizes["ply_compressed"] < sizes["ply"]
    for args, msg in [(["-m", str(tmp_path / "missing"), "--format", "spz"], "model folder not found"),
                      (["-m", str(model), "--format", "spz", "-o", str(tmp_path / "x.ply")], "must end in .spz"),
                      (["-m", str(model), "--format", "ply", "-o", str(model / "point_cloud.ply")], "overwrite")]:
        with pytest.raises(SystemExit) as e:
            main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and msg in err, err
        assert len(err.strip().splitlines()) == 1
