"""The command line: version, help on every action and flag, one exit-code convention, readable errors."""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import EXIT_CODES, build_parser, main
from benchmark.tempdirs import remove_stale_worker_dirs

REPO = Path(__file__).resolve().parents[1]


def walk(parser: argparse.ArgumentParser, name: str = "mmbench"):
    """(command name, parser) for the main parser and every action's parser."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from walk(child, f"{name} {sub}")


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("mmbench ")


def test_every_action_and_flag_has_help_and_the_exit_codes():
    for name, parser in walk(build_parser()):
        for action in parser._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
        assert "exit status:" in parser.format_help(), name
    assert "2  bad input" in EXIT_CODES and "1  a method failed" in EXIT_CODES


def test_tasks_help_describes_its_actions():
    text = dict(walk(build_parser()))["mmbench tasks"].format_help()
    for action in ("list", "show", "verify", "make-splits", "$MMBENCH_TASKS"):
        assert action in text


def test_did_you_mean_for_methods_and_bad_input_exits_2(capsys, tmp_path):
    assert main(["run", "--task", "geo-gse7390", "--method", "baselines/coxhp", "--out", str(tmp_path)]) == 2
    assert "did you mean baselines/coxph" in capsys.readouterr().err
    assert main(["validate", "baselines/coxhp"]) == 2  # as `run`, not 1
    assert "did you mean baselines/coxph" in capsys.readouterr().err
    assert main(["run", "--task", "geo-gse739", "--method", "baselines/coxph", "--out", str(tmp_path)]) == 2
    assert "did you mean geo-gse7390" in capsys.readouterr().err


def test_stale_worker_folders_of_dead_runs_are_removed(tmp_path):
    dead = tmp_path / "mmbench-worker-dead"
    (dead / "tmp").mkdir(parents=True)
    old = time.time() - 3600
    os.utime(dead, (old, old))
    young = tmp_path / "mmbench-worker-young"
    young.mkdir()
    live = tmp_path / "mmbench-worker-live"
    live.mkdir()
    os.utime(live, (old, old))
    here = os.getcwd()
    os.chdir(live)  # a live process works in it, as a run's worker server does
    try:
        removed = remove_stale_worker_dirs(tmp_path)
    finally:
        os.chdir(here)
    assert removed == [dead] and not dead.exists() and young.exists() and live.exists()


def test_untiled_tiff_says_so_and_how_to_convert(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from benchmark.errors import DataError
    from benchmark.slides.reader import SlideReader, untiled_tiff_hint

    image = np.random.default_rng(0).integers(0, 255, size=(300, 400, 3), dtype=np.uint8)  # SYNTHETIC pixels
    strips, tiled = tmp_path / "strips.tif", tmp_path / "tiled.tif"
    tifffile.imwrite(strips, image)
    tifffile.imwrite(tiled, image, tile=(256, 256))
    assert untiled_tiff_hint(tiled) is None
    with pytest.raises(DataError) as info:
        SlideReader(strips)
    message = str(info.value)
    assert "untiled" in message and "vips tiffsave" in message and "tifffile" in message


def test_slides_prepare_prints_failed_slides_readably(tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    slides = tmp_path / "slides"
    slides.mkdir()
    tifffile.imwrite(slides / "TCGA-XX-0001-DX1.tif", np.zeros((64, 64, 3), dtype=np.uint8))  # SYNTHETIC, untiled
    status = main(["slides", "prepare", str(slides), "--out", str(tmp_path / "features"), "--encoder", "random-tiny",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    line = next(line for line in err.splitlines() if line.startswith("mmbench: failed slide"))
    assert "SlideResult(" not in line and "TCGA-XX-0001-DX1" in line and "untiled" in line


def test_a_shipped_method_is_found_from_another_folder_and_a_local_one_wins(tmp_path, monkeypatch):
    from benchmark.method import load_spec

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    assert load_spec("baselines/coxph").path.resolve() == repo / "baselines" / "coxph"
    local = tmp_path / "baselines" / "coxph"
    local.mkdir(parents=True)
    (local / "method.toml").write_text((repo / "baselines" / "coxph" / "method.toml").read_text())
    assert load_spec("baselines/coxph").path.resolve() == local.resolve()


def test_a_one_fold_run_shows_no_spread_and_a_text_list_param_is_typed(tmp_path, capsys):
    repo = Path(__file__).resolve().parents[1]
    args = ["run", "--task", "geo-gse1992", "--method", str(repo / "baselines" / "coxph"), "--folds", "0",
            "--out", str(tmp_path), "--quiet"]
    assert main([*args, "--param", "alphas=1.0,2.0"]) == 0  # before: the method got the text '1.0,2.0' and failed
    out = capsys.readouterr().out
    assert "± 0.000" not in out and "mean ± sd" not in out
    assert re.search(r"^\s*0\s+25\s+7\s+0\.\d{3}", out, re.M)  # fold 0: 25 test patients, 7 events
    assert main([*args, "--param", "alphas=[1.0, 2.0]"]) == 0  # the same params: the same run, reused
    assert "skipped (done)" in capsys.readouterr().out


def test_the_run_table_says_when_a_fold_stopped_at_its_first_epochs(tmp_path):
    from benchmark.cli import fold_status

    (tmp_path / "profile.json").write_text('{"best_epoch": 1, "train_cindex": 0.42}')
    assert fold_status(tmp_path, skipped=True) == "skipped (done); stopped at epoch 1; train C 0.420 <= 0.5"
    (tmp_path / "profile.json").write_text('{"best_epoch": 14, "train_cindex": 0.71}')
    assert fold_status(tmp_path, skipped=False) == ""
    assert fold_status(tmp_path / "absent", skipped=False) == ""


def test_a_failed_fold_has_a_row_and_mmbench_warnings_are_one_line(tmp_path, capsys):
    import warnings

    from benchmark.cli import one_line_warning

    methods = Path(__file__).resolve().parent / "methods"
    assert main(["run", "--task", "geo-gse1992", "--method", str(methods / "hostile-raise"), "--folds", "0",
                 "--out", str(tmp_path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert re.search(r"^\s*0\s.*\sfailed\s*$", captured.out, re.M) and "fold 0 failed" in captured.err
    one_line_warning(UserWarning("no data root: TCGA runs left out"), UserWarning,
                     str(Path(__file__).resolve().parents[1] / "benchmark" / "leaderboard.py"), 120)
    assert capsys.readouterr().err == "mmbench: warning: no data root: TCGA runs left out\n"
    one_line_warning(UserWarning("from elsewhere"), UserWarning, "/site-packages/x.py", 3)
    assert "x.py:3: UserWarning: from elsewhere" in capsys.readouterr().err
    assert warnings.showwarning is not one_line_warning  # main() restored Python's own on return
