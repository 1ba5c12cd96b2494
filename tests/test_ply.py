"""Standard 3DGS ply: exact round trip, Inria property layout, corrupt files."""

import numpy as np
import pytest
import torch
from plyfile import PlyData

from gs_vq.errors import GsVqError
from gs_vq.io import load_ply, save_ply


def random_splats(n=50, degree=3, features=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = (degree + 1) ** 2
    s = {
        "means": torch.randn(n, 3, generator=g),
        "scales": torch.randn(n, 3, generator=g) - 3,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g),
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": torch.randn(n, K - 1, 3, generator=g),
    }
    if features:
        s["features"] = torch.randn(n, features, generator=g)
    return s


@pytest.mark.parametrize("degree,features", [(3, 0), (0, 0), (1, 8)])
def test_round_trip_is_exact(tmp_path, degree, features):
    splats = random_splats(degree=degree, features=features)
    path = str(tmp_path / "p.ply")
    size = save_ply(splats, path)
    assert size == (tmp_path / "p.ply").stat().st_size
    back = load_ply(path)
    assert set(back) == set(splats)
    for k in splats:
        assert torch.equal(back[k], splats[k]), k


def test_semantic_labels_one_name_and_old_plys(tmp_path):
    """Labels are ``labels`` / ``labelconf`` in the splats and the ply; plys that called them
    ``label`` / ``label_conf`` still load under the new names."""
    from plyfile import PlyElement

    splats = random_splats(n=20, degree=0)
    splats["labels"] = torch.randint(0, 7, (20,))
    splats["labelconf"] = torch.rand(20)
    path = str(tmp_path / "new.ply")
    save_ply(splats, path)
    names = [p.name for p in PlyData.read(path)["vertex"].properties]
    assert "labels" in names and "labelconf" in names and "label" not in names
    v = PlyData.read(path)["vertex"].data
    old = np.empty(len(v), dtype=[("label" if n == "labels" else "label_conf" if n == "labelconf" else n, "f4")
                                  for n in v.dtype.names])
    for n_old, n in zip(old.dtype.names, v.dtype.names):
        old[n_old] = v[n]
    PlyData([PlyElement.describe(old, "vertex")]).write(str(tmp_path / "old.ply"))
    for back in (load_ply(path), load_ply(str(tmp_path / "old.ply"))):
        assert torch.equal(back["labels"], splats["labels"]) and back["labels"].dtype == torch.int64
        assert torch.equal(back["labelconf"], splats["labelconf"]) and "label" not in back


def test_inria_layout(tmp_path):
    splats = random_splats(n=7)
    save_ply(splats, str(tmp_path / "p.ply"))
    v = PlyData.read(str(tmp_path / "p.ply"))["vertex"]
    names = [p.name for p in v.properties]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(45)] + ["opacity"]
    expected += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    assert names == expected
    # f_rest is channel-major: f_rest_0..14 are the 15 red coefficients
    red = np.stack([v[f"f_rest_{i}"] for i in range(15)], -1)
    assert np.array_equal(red, splats["shN"][:, :, 0].numpy())


def test_corrupt_and_missing(tmp_path):
    with pytest.raises(GsVqError, match="not found"):
        load_ply(str(tmp_path / "nope.ply"))
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n\x00\x01")
    with pytest.raises(GsVqError) as e:
        load_ply(str(bad))
    assert "\n" not in str(e.value)
    path = str(tmp_path / "trunc.ply")
    save_ply(random_splats(), path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(GsVqError):
        load_ply(path)


def test_nan_rejected(tmp_path):
    splats = random_splats()
    splats["means"][3, 1] = float("nan")
    save_ply(splats, str(tmp_path / "nan.ply"))
    with pytest.raises(GsVqError, match="NaN"):
        load_ply(str(tmp_path / "nan.ply"))
