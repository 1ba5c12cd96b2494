"""Test-wide set-up: passive OpenMP waiting before torch loads (see gs_vq/__init__.py)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.fixture
def broken_build(tmp_path, monkeypatch):
    """Point a kernel module (``gs_vq.render.ext`` or ``gs_vq.quant.ext``) at a source that does
    not compile, with a fresh cache and builds enabled; returns the function that does it."""

    def apply(ext_module) -> None:
        broken = tmp_path / "broken.cpp"
        broken.write_text("this is not C++;\n")
        monkeypatch.setattr(ext_module, "_SOURCE", str(broken))
        monkeypatch.setattr(ext_module, "_module", None)
        monkeypatch.setattr(ext_module, "_failed", None)
        monkeypatch.setenv("GS_VQ_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("GS_VQ_NO_EXT", raising=False)

    return apply
