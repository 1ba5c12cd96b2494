"""A C++ compiler without OpenMP: the kernels fall back to their torch twins with one line (gs_vq.cext)."""

import logging
import os
import stat

import pytest

import gs_vq.cext as cext


def _fake_compiler(tmp_path):
    """A ``c++`` that refuses ``-fopenmp`` as Apple's clang does and runs the real one otherwise."""
    script = tmp_path / "c++"
    script.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "-fopenmp" ] && '
                      '{ echo "clang: error: unsupported option \'-fopenmp\'" >&2; exit 1; }; done\n'
                      'exec /usr/bin/env c++ "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("GS_VQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GS_VQ_NO_EXT", raising=False)
    monkeypatch.setattr(cext, "_no_openmp", False)
    return tmp_path


def test_a_compiler_without_openmp_falls_back_with_one_line(fresh, monkeypatch, caplog):
    """A real build through torch's cpp_extension and ninja, with a compiler that rejects -fopenmp."""
    if not os.path.exists("/usr/bin/env"):
        pytest.skip("needs /usr/bin/env to find the real compiler")
    monkeypatch.setenv("CXX", _fake_compiler(fresh))
    src = fresh / "k.cpp"
    src.write_text("#include <torch/extension.h>\nPYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {}\n")
    with caplog.at_level(logging.DEBUG, logger="gs_vq"):
        first = cext.Kernel("gs_vq_test_omp_a", str(src), "test kernel", "torch", native=True)
        assert first.load() is None
        assert first.failed == cext.NO_OPENMP
        # a second kernel does not try again and says nothing more
        second = cext.Kernel("gs_vq_test_omp_b", str(src), "other kernel", "torch")
        assert second.load() is None and second.failed == cext.NO_OPENMP
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "\n" not in message and "OpenMP" in message and "torch" in message, message


@pytest.mark.parametrize("output", [
    "c++: error: unrecognized command-line option '-fopenmp'",
    "clang: error: unsupported option '-fopenmp'; use '-fopenmp=<value>'",
    "x.cpp:17:10: fatal error: omp.h: No such file or directory",
    "x.cpp:17:10: fatal error: 'omp.h' file not found",
    "/usr/bin/ld: cannot find -lgomp: No such file or directory",
    "ld: library not found for -lomp",
])
def test_compiler_messages_that_mean_no_openmp(output):
    error = RuntimeError(f"Error building extension 'k': [1/2] c++ -O3 -fopenmp -c k.cpp\n{output}\n"
                         "ninja: build stopped")
    assert cext._failure_reason(error) == cext.NO_OPENMP


def test_other_build_failures_keep_their_own_last_line():
    error = RuntimeError("Error building extension 'k': c++ -O3 -fopenmp -c k.cpp\nk.cpp:3:1: error: expected ';'")
    assert cext._failure_reason(error) == "RuntimeError: k.cpp:3:1: error: expected ';'"


def test_importing_gs_vq_needs_no_fcntl():
    """Windows has no fcntl: gs_vq must import without it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['fcntl'] = None\n"  # any `import fcntl` now raises ImportError
            "import gs_vq, gs_vq.cext, gs_vq.quant, gs_vq.render\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GS_VQ_NO_EXT": "1"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
