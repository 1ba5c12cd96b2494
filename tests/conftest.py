"""Test-wide set-up: passive OpenMP waiting before torch loads (see gs_vq/__init__.py)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.fixture
def broken_build(tmp_path, monkeypatch):
    """Point a kernel (``gs_vq.render.ext.KERNEL`` or ``gs_vq.quant.ext.KERNEL``) at a source
    that does not compile, with a fresh cache and builds enabled; returns the function that does it."""

    def apply(kernel) -> None:
        broken = tmp_path / "broken.cpp"
        broken.write_text("this is not C++;\n")
        monkeypatch.setattr(kernel, "source", str(broken))
        monkeypatch.setattr(kernel, "module", None)
        monkeypatch.setattr(kernel, "failed", None)
        monkeypatch.setenv("GS_VQ_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("GS_VQ_NO_EXT", raising=False)

    return apply
