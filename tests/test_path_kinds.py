"""Every path option of the command-line tools, given the wrong kind of path (a file where a folder
belongs, a folder where a file belongs): one line ``error: ...``, exit 2, nothing written."""

from pathlib import Path

import pytest

from gs_vq.cli.render import main as render_main
from gs_vq.cli.train import main as train_main
from gs_vq.cli.view import main as view_main
from gs_vq.export import main as export_main
from gs_vq.model_dir import release_model_dirs

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config", str(ROOT / "tests" / "tiny.yaml"), "--quiet"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("kinds") / "m"
    train_main(["-m", str(path), "--iterations", "20", *TINY])
    release_model_dirs()
    return path


def one_line_exit_2(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    release_model_dirs()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


CASES = [  # (tool, argv with {model}, {file}, {dir}; what the line must say)
    (train_main, ["-s", "{file}", "-m", "{dir}/out"], "not a folder"),
    (train_main, ["-m", "{file}", *TINY], "is a file, not a folder"),
    (train_main, ["--config", "{dir}", "-m", "{dir}/out"], "is a folder"),
    (train_main, ["-m", "{dir}/out", "--start_checkpoint", "{dir}", *TINY], "is a folder"),
    (train_main, ["-m", "{dir}/out", "--semantic", "--features", "{file}", *TINY], "not a folder"),
    (render_main, ["-m", "{file}"], "is a file, not a folder"),
    (render_main, ["-m", "{model}", "-s", "{file}"], "not a folder"),
    (render_main, ["-m", "{model}", "--ply", "{dir}"], "is a folder"),
    (render_main, ["-m", "{model}", "--query", "x", "--extract", "{dir}"], "is a folder"),
    (render_main, ["-m", "{model}", "--eval-queries", "{dir}"], "is a folder"),
    (view_main, ["-m", "{file}"], "is a file, not a folder"),
    (view_main, ["-m", "{model}", "--ply", "{dir}"], "is a folder"),
    (export_main, ["-m", "{model}", "--format", "ply", "--ply", "{dir}"], "is a folder"),
    (export_main, ["-m", "{model}", "--format", "ply", "-o", "{dir}"], "is a folder"),
    (export_main, ["-m", "{file}", "--format", "ply"], "is a file, not a folder"),
]


@pytest.mark.parametrize("main,argv,msg", CASES, ids=[f"{m.__module__.split('.')[-1]}:{' '.join(a[:2])}:{i}"
                                                      for i, (m, a, _) in enumerate(CASES)])
def test_a_path_of_the_wrong_kind_is_one_line(model, tmp_path, capsys, main, argv, msg):
    file, folder = tmp_path / "a_file.txt", tmp_path / "a_folder"
    file.write_text("not what was asked for\n")
    folder.mkdir()
    before = sorted(p.name for p in model.rglob("*"))
    argv = [a.format(model=model, file=file, dir=folder) for a in argv]
    line = one_line_exit_2(main, argv, capsys)
    assert msg in line, line
    assert sorted(p.name for p in model.rglob("*")) == before  # nothing written into the model
    assert not (folder / "out").exists() and list(folder.iterdir()) == []
