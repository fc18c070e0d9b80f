"""Integrity cases I02-I10 (../shared/cases/integrity/README.md): every input checked at the door,
method outputs checked like inputs, scoring independent of what a method saw.

The case files are SYNTHETIC (ids TCGA-ZZ-* or 00000...) and are read from ../shared/cases/integrity
relative to the repository; tests that need one skip, with the reason, where it is absent. Nothing of
them is copied into the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from benchmark.bags import build_bags
from benchmark.errors import DataError
from benchmark.integrity import (check_bag_file, check_feature_widths, inspect_bag_file, missing_as_nan,
                                 read_table)
from benchmark.loaders import load_cohort, one_hot
from benchmark.splits import load_split_set, sha256_bytes, verify_split_set
from benchmark.task import load_task
from conftest import REPO, TOY_TASK, toy_slides, write_toy

CASES = REPO.parent / "shared" / "cases" / "integrity"


def case(name: str) -> Path:
    path = CASES / name
    if not path.is_file():
        pytest.skip(f"integrity case {name} not found at {path} (../shared/cases/integrity)")
    return path


def write_small_toy(root: Path, slides: pd.DataFrame) -> tuple[Path, Path]:
    """Like conftest.write_toy for a handful of patients: one fold, the first patient in test, the rest in train."""
    data_root, tasks = root / "data", root / "tasks"
    (data_root / "omics").mkdir(parents=True)
    (tasks / "splits").mkdir(parents=True)
    slides.to_csv(data_root / "omics" / "tcga_toy_all_clean.csv.zip", index=False)
    ids = slides["case_id"].drop_duplicates().astype(str).tolist()
    table = pd.DataFrame({"patient_id": ids, "fold": 0, "role": ["test"] + ["train"] * (len(ids) - 1)})
    data = table.to_csv(index=False, lineterminator="\n").encode()
    (tasks / "splits" / "toy.csv").write_bytes(data)
    (tasks / "toy.toml").write_text(TOY_TASK.replace("{sha}", sha256_bytes(data)))
    return data_root, tasks


def tcga_root(tmp_path: Path, slides: pd.DataFrame, task_text: str = TOY_TASK, **files) -> tuple[Path, Path]:
    """A SYNTHETIC TCGA-layout data root holding ``slides`` as cohort 'toy', its task file and own splits."""
    data_root, tasks = (write_toy if slides["case_id"].nunique() >= 20 else write_small_toy)(tmp_path, slides)
    (tasks / "toy.toml").write_text(task_text.replace("{sha}", sha256_bytes((tasks / "splits" / "toy.csv").read_bytes())))
    for relative, data in files.items():
        path = data_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data_root, tasks


# --------------------------------------------------------------------------- I02 ids are text


def i02_slides() -> pd.DataFrame:
    labels = pd.read_csv(case("I02-ids-with-leading-zeros.csv"), dtype=str)
    return pd.DataFrame({"case_id": labels["case_id"], "slide_id": labels["case_id"] + "-01Z-00-DX1.svs",
                         "age": [50, 60, 70, 40], "site": "ZZ", "survival_months": labels["survival_months"].astype(float),
                         "censorship": labels["censorship"].astype(int), "is_female": [0, 1, 0, 1],
                         "oncotree_code": ["A", "B", "A", "B"], "time_copy": 1.0,
                         **{f"G{g}_rnaseq": [0.1 * g, 0.2, -0.3, 0.4] for g in range(5)}})


def test_i02_ids_with_leading_zeros_stay_text_in_the_omics_file(tmp_path, monkeypatch):
    data_root, tasks = tcga_root(tmp_path, i02_slides())
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    cohort = load_cohort(load_task("toy"), data_root)
    assert list(cohort.patient_id) == ["00000", "00001", "00002", "00003"]
    assert cohort.select(["00002"]).time.tolist() == [32.58]
    split = load_split_set(load_task("toy"), "own", data_root)
    assert set(split.table["patient_id"]) == {"00000", "00001", "00002", "00003"}


def test_i02_ids_with_leading_zeros_join_a_separate_labels_file(tmp_path, monkeypatch):
    slides = i02_slides().drop(columns=["survival_months", "censorship"])
    labels_root = tmp_path / "labels"
    labels_root.mkdir()
    shutil.copy(case("I02-ids-with-leading-zeros.csv"), labels_root / "toy_labels.csv")
    data_root, tasks = write_small_toy(tmp_path, i02_slides())
    slides.to_csv(data_root / "omics" / "tcga_toy_all_clean.csv.zip", index=False)
    text = (tasks / "toy.toml").read_text().replace('time_unit = "months"', 'time_unit = "months"\nlabels = "toy_labels.csv"')
    (tasks / "toy.toml").write_text(text)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    cohort = load_cohort(load_task("toy"), data_root, labels_root)
    assert list(cohort.patient_id) == ["00000", "00001", "00002", "00003"]
    assert cohort.event.tolist() == [0, 1, 0, 1]


def test_read_table_keeps_every_id_column_as_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("case_id,slide_id,train,val,x\n00017,0001-DX1,007,010,3\n")
    frame = read_table(path)
    assert frame.loc[0, ["case_id", "slide_id", "train", "val"]].tolist() == ["00017", "0001-DX1", "007", "010"]
    assert frame.loc[0, "x"] == 3
    with pytest.raises(DataError, match="nope.csv: cannot read"):
        read_table(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- I03 / I04 bags


def test_i03_a_bag_without_patches_is_a_missing_slide(tmp_path):
    bag = inspect_bag_file(case("I03-zero-patch-bag.h5"))
    assert bag.empty and bag.n_patches == 0 and bag.width == 16 and bag.problem is None
    shutil.copy(case("I03-zero-patch-bag.h5"), tmp_path / "P1-DX1.a.h5")
    with h5py.File(tmp_path / "P2-DX1.b.h5", "w") as f:
        f.create_dataset("features", data=np.ones((3, 16), np.float32))
        f.create_dataset("coords", data=np.zeros((3, 2), np.int64))
    bags = build_bags(np.array(["P1", "P2"]), np.array(["P1-DX1.a.svs", "P2-DX1.b.svs"]), tmp_path)
    assert bags.paths[0] == () and bags.n_patches[0] == 0 and not bags.has_bag()[0]  # missing, not zeros
    assert bags.n_patches[1] == 3 and bags.paths[1] == (str((tmp_path / "P2-DX1.b.h5").resolve()),)
    assert bags.empty_files == (str((tmp_path / "P1-DX1.a.h5").resolve()),)


def test_i04_non_finite_patch_features_are_one_clear_error_naming_file_and_count(tmp_path):
    path = case("I04-nan-patch-features.h5")
    bag = inspect_bag_file(path)
    assert bag.nonfinite_rows == 1 and bag.n_patches == 8
    with pytest.raises(DataError, match=r"I04-nan-patch-features.h5: 1 of 8 patches hold non-finite features "
                                        r"\(NaN/inf; first at row 3\)"):
        check_bag_file(path)
    shutil.copy(path, tmp_path / "P1-DX1.a.h5")
    with pytest.raises(DataError, match="1 of 8 patches hold non-finite"):
        build_bags(np.array(["P1"]), np.array(["P1-DX1.a.svs"]), tmp_path)


def test_bag_coords_of_another_length_and_two_widths_are_refused(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("features", data=np.ones((4, 8), np.float32))
        f.create_dataset("coords", data=np.zeros((3, 2), np.int64))
    with pytest.raises(DataError, match="'coords' has 3 rows but 'features' has 4"):
        check_bag_file(tmp_path / "a.h5")
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("features", data=np.ones((4, 8), np.float32))
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("features", data=np.ones((2, 6), np.float32))
    bags = [check_bag_file(tmp_path / "b.h5"), check_bag_file(tmp_path / "c.h5")]
    with pytest.raises(DataError, match="different widths: c.h5 has 6, b.h5 has 8"):
        check_feature_widths(bags, tmp_path)


# --------------------------------------------------------------------------- I05 slide of another patient


def test_i05_slide_filed_under_another_patient_is_refused_naming_both(tmp_path, monkeypatch):
    slides = read_table(case("I05-slide-of-another-patient.csv"))
    slides["time_copy"] = slides["survival_months"]
    slides["G4_rnaseq"] = 0.0
    data_root, tasks = tcga_root(tmp_path, slides)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    with pytest.raises(DataError, match=r"slide 'TCGA-ZZ-0004-01Z-00-DX2.00000004-SYN1.svs' is filed under "
                                        r"patient 'TCGA-ZZ-0003' but its id names another patient"):
        load_cohort(load_task("toy"), data_root)
    # a cohort with another id scheme declares it
    (tasks / "toy.toml").write_text((tasks / "toy.toml").read_text().replace(
        'time_unit = "months"', 'time_unit = "months"\nslide_id_rule = "none"'))
    assert load_cohort(load_task("toy"), data_root).n == 6


# --------------------------------------------------------------------------- I06 published split files


def published_toy(tmp_path: Path, split_csv: Path) -> tuple[Path, Path]:
    """A SYNTHETIC 100-patient TCGA-ZZ cohort and an MCAT-layout split family holding ``split_csv`` as fold 0."""
    rng = np.random.default_rng(0)
    ids = [f"TCGA-ZZ-{i:04d}" for i in range(100)]
    slides = pd.DataFrame({"case_id": ids, "slide_id": [f"{i}-01Z-00-DX1.svs" for i in ids], "age": 50, "site": "ZZ",
                           "survival_months": rng.uniform(1, 100, 100).round(2), "censorship": (np.arange(100) % 3 == 0).astype(int),
                           "is_female": 0, "oncotree_code": "A", "time_copy": 1.0,
                           **{f"G{g}_rnaseq": rng.normal(size=100) for g in range(5)}})
    data_root, tasks = write_toy(tmp_path, slides)
    folder = data_root / "splits" / "mcat" / "tcga_toy"
    folder.mkdir(parents=True)
    shutil.copy(split_csv, folder / "splits_0.csv")
    digest = sha256_bytes(split_csv.read_bytes())  # the family hash of one file = that file's sha256
    text = (tasks / "toy.toml").read_text() + (f'\n[splits.mcat]\npath = "splits/mcat/tcga_toy"\nsha256 = "{digest}"\n'
                                               'val_is_test = true\n')
    (tasks / "toy.toml").write_text(text)
    return data_root, tasks


def test_i06_published_split_with_a_repeated_patient_is_refused_by_verify_and_run(tmp_path, monkeypatch, capsys):
    from benchmark.cli import main

    data_root, tasks = published_toy(tmp_path, case("I06-published-split-repeated-patient.csv"))
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    with pytest.raises(DataError, match=r"splits_0.csv: patient 'TCGA-ZZ-0005' appears 2 times in column 'train'"):
        load_split_set(load_task("toy"), "mcat", data_root)
    assert main(["tasks", "verify", "toy", "--data-root", str(data_root)]) == 1
    out = capsys.readouterr().out
    assert "toy [mcat]: FAILED" in out and "'TCGA-ZZ-0005' appears 2 times in column 'train'" in out
    assert main(["run", "--task", "toy", "--method", "baselines/coxph", "--splits", "mcat",
                 "--data-root", str(data_root), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "TCGA-ZZ-0005' appears 2 times in column 'train'" in err and not (tmp_path / "runs").exists()


def test_i06_val_column_repeats_are_named_too(tmp_path, monkeypatch):
    frame = pd.read_csv(case("I06-published-split-repeated-patient.csv"), dtype=str, index_col=0)
    frame.loc[frame.index[-1], "train"] = np.nan  # remove the train repeat (last row): the val repeat remains
    path = tmp_path / "splits_0.csv"
    frame.to_csv(path)
    data_root, tasks = published_toy(tmp_path / "root", path)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    with pytest.raises(DataError, match=r"patient 'TCGA-ZZ-0095' appears 2 times in column 'val'"):
        load_split_set(load_task("toy"), "mcat", data_root)


def test_own_split_with_unknown_or_repeated_patients_is_refused_before_training(toy, tmp_path, capsys):
    from benchmark.cli import main

    data_root, tasks = toy
    table = pd.read_csv(tasks / "splits" / "toy.csv", dtype=str)
    table.loc[0, "patient_id"] = "TCGA-XX-9999"
    data = table.to_csv(index=False, lineterminator="\n").encode()
    (tasks / "splits" / "toy.csv").write_bytes(data)
    text = (tasks / "toy.toml").read_text()
    old = text.split('sha256 = "')[1].split('"')[0]
    (tasks / "toy.toml").write_text(text.replace(old, sha256_bytes(data)))
    assert main(["run", "--task", "toy", "--method", "baselines/coxph", "--data-root", str(data_root),
                 "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "1 split patients are not in the cohort, e.g. 'TCGA-XX-9999'" in err
    assert not (tmp_path / "runs").exists()  # refused before any fold ran


# --------------------------------------------------------------------------- label rows of every endpoint file


def test_conflicting_rows_in_an_endpoint_file_are_an_error(tmp_path, monkeypatch):
    slides = toy_slides()
    meta = slides[["case_id", "slide_id"]].assign(survival_months_dss=slides["survival_months"],
                                                   censorship_dss=slides["censorship"])
    first = meta.index[meta["case_id"].duplicated(keep=False)][0]
    meta.loc[first, "censorship_dss"] = 1 - meta.loc[first, "censorship_dss"]
    text = TOY_TASK.replace('endpoint = "OS"', 'endpoint = "DSS"')
    data_root, tasks = tcga_root(tmp_path, slides, text,
                                 **{"survpath/metadata/tcga_toy.csv": meta.to_csv(index=False).encode()})
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    with pytest.raises(DataError, match=rf"tcga_toy.csv: patient '{meta.loc[first, 'case_id']}' has rows that "
                                        r"disagree on field 'censorship_dss'"):
        load_cohort(load_task("toy"), data_root)


# --------------------------------------------------------------------------- I08 missing markers


def test_i08_missing_markers_are_nan_in_every_dummy():
    values = pd.Series(["yes", "missing", "", "NA", "[Not Available]", None, "no", " missing "])
    frame = one_hot(values, "f")
    assert list(frame.columns) == ["f=no", "f=yes"]
    assert frame.isna().all(axis=1).tolist() == [False, True, True, True, True, True, False, True]
    assert missing_as_nan(pd.Series([1.0, 2.0])).tolist() == [1.0, 2.0]


def test_i08_cardio_smart_has_no_missing_category_and_the_corpus_invents_none():
    from benchmark.pretrain.corpus import align_columns, cardio_pool

    cohort = load_cohort(load_task("cardio-smart"))
    columns = [c for frame in cohort.modalities.values() for c in frame.columns]
    assert not any(c.endswith("=missing") for c in columns)
    raw = cardio_pool()["smarto"]
    for field in ("fac_diabetes", "fac_smoking", "fac_alcohol"):
        marked = (raw[field].astype(str) == "missing").to_numpy()
        dummies = [c for c in columns if c.startswith(field + "=")]
        assert marked.any() and dummies
        frame = pd.concat([cohort.modalities[m] for m in cohort.modalities], axis=1)[dummies]
        assert frame.loc[raw.index[marked].astype(str)].isna().all().all()  # NaN in every dummy
    trace = align_columns(cardio_pool()["TRACE"], ["fac_diabetes=1", "fac_diabetes=missing"], "TRACE", "pan-cardio",
                          "smarto")
    assert trace["fac_diabetes=missing"].isna().all()  # never 1 for the non-diabetic TRACE patients


# --------------------------------------------------------------------------- I07 method outputs


def test_i07_rising_survival_curves_give_a_failed_record(toy, tmp_path):
    from benchmark.runner import RunConfig, run
    from conftest import METHODS

    data_root, _ = toy
    result = run(RunConfig(task="toy", method=METHODS / "rising-survival", data_root=data_root, out=tmp_path / "runs",
                           folds=[0]))
    assert result.failed and not result.fold_metrics
    failure = result.failures[0]
    assert failure["kind"] == "bad_output" and failure["stage"] == "predict"
    assert "survival must be non-increasing along the time grid" in failure["reason"]
    assert not (result.run_dir / "fold_0" / "metrics.json").exists()


def test_i07_prediction_check_allows_float_noise_and_refuses_a_real_rise():
    from benchmark.errors import MethodError
    from benchmark.method import Prediction, check_prediction

    curve = np.array([[1.0, 0.8, 0.8 + 1e-9, 0.5], [1.0 + 1e-9, 0.9, 0.7, 0.7]])
    checked = check_prediction(Prediction(np.zeros(2), curve), 2, 4, "m")
    assert checked.survival.max() == 1.0  # clipped into [0, 1]
    with pytest.raises(MethodError, match=r"non-increasing .*patient row 1 rises by 0.1 at grid point 3; 1 of 2"):
        check_prediction(Prediction(np.zeros(2), np.array([[1.0, 0.8, 0.7, 0.5], [1.0, 0.9, 0.7, 0.8]])), 2, 4, "m")
    with pytest.raises(MethodError, match=r"within \[0, 1\]"):
        check_prediction(Prediction(np.zeros(1), np.array([[1.2, 0.8, 0.7, 0.5]])), 1, 4, "m")
    with pytest.raises(MethodError, match="risk holds 1 NaN/inf"):
        check_prediction(Prediction(np.array([np.inf]), None), 1, 4, "m")


# --------------------------------------------------------------------------- I09 / I10 / uno ties / Brier at horizons


def test_i09_brier_is_defined_at_the_largest_test_time_and_dropped_points_are_recorded():
    from benchmark.metrics import brier_at_horizons, evaluate_fold, integrated_brier_score

    train_t, train_e = [1.0, 2.0, 3.0], [1, 1, 1]
    test_t, test_e = [1.0, 2.0], [1, 1]
    curves = np.array([[0.5, 0.5, 0.5], [0.9, 0.9, 0.5]])
    grid = np.array([1.0, 1.5, 2.0])
    scores, reasons = brier_at_horizons(train_t, train_e, test_t, test_e, curves, grid, grid)
    assert np.allclose(scores, [0.13, 0.13, 0.25]) and reasons == [None, None, None]  # by hand
    assert integrated_brier_score(train_t, train_e, test_t, test_e, curves, grid) == pytest.approx(0.16)
    two = integrated_brier_score(train_t, train_e, test_t, test_e, curves[:, [0, 2]], grid[[0, 2]])
    assert two == pytest.approx((0.13 + 0.25) / 2)  # grid [1, 2] no longer raises
    wide = np.array([0.0, 1.0, 1.5, 2.0, 2.5])
    wide_curves = np.array([[1.0, 0.5, 0.5, 0.5, 0.4], [1.0, 0.9, 0.9, 0.5, 0.4]])
    out = evaluate_fold(train_t, train_e, test_t, test_e, [0.9, 0.1], wide_curves, wide, [1.5])
    assert out["ibs"] == pytest.approx(0.16)
    assert out["undefined"]["ibs_grid"] == ("2 of 5 grid points left out of the IBS: t=0: before the first test "
                                            "time 1; t=2.5: after the last test time 2")
    assert out["brier"] == {1.5: pytest.approx(0.13)}


def test_brier_scores_equal_scikit_survival_below_the_largest_test_time():
    from sksurv.metrics import brier_score
    from sksurv.util import Surv

    from benchmark.metrics import brier_at_horizons

    rng = np.random.default_rng(3)
    tt, te = rng.uniform(1, 10, 80), rng.random(80) < 0.6
    t, e = rng.uniform(1, 9, 30), rng.random(30) < 0.6
    grid = np.linspace(t.min(), t.max(), 12)[:-1]
    curves = np.sort(rng.random((30, grid.size)), axis=1)[:, ::-1]
    ours, _ = brier_at_horizons(tt, te, t, e, curves, grid, grid)
    _, theirs = brier_score(Surv.from_arrays(te, tt), Surv.from_arrays(e, t), curves, grid)
    assert np.allclose(ours, theirs, rtol=1e-12, atol=0)


def test_i10_censoring_weights_come_from_the_whole_training_fold_whatever_the_budget(toy, tmp_path):
    from benchmark.runner import RunConfig, run
    from conftest import METHODS

    data_root, _ = toy
    scored = {}
    for budget in (0.25, 1.0):
        result = run(RunConfig(task="toy", method=METHODS / "budget-blind", data_root=data_root, out=tmp_path / "runs",
                               folds=[0], params={"label_budget": budget}))
        assert not result.failed
        scored[budget] = result.fold_metrics[0]
    for name in ("uno_c", "ibs", "td_auc_mean", "harrell_c"):
        assert scored[0.25][name] is not None and scored[0.25][name] == scored[1.0][name], name
    assert scored[0.25]["brier"] == scored[1.0]["brier"]


def test_uno_c_counts_an_event_and_a_censoring_at_the_same_time_as_comparable():
    from benchmark.metrics import harrell_c, uno_c

    # no censoring in training: G = 1, so Uno's weights are all 1. Pairs: (0, 1) tied times, 0 an event and 1
    # censored -> comparable here (scikit-survival), discordant (risk 0.4 < 0.5); (0, 2) concordant.
    # Counting the tied pair gives 1/2; Uno et al. (2011), who need T_i < T_j, would give 1/1.
    time, event, risk = [1.0, 1.0, 2.0], [1, 0, 1], [0.4, 0.5, 0.3]
    assert uno_c([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], time, event, risk, tau=3.0) == pytest.approx(0.5)
    assert harrell_c(time, event, risk) == pytest.approx(0.5)


# --------------------------------------------------------------------------- mmbench audit


def test_audit_lists_every_finding_of_a_broken_cohort_and_exits_1(toy_wsi, capsys):
    from benchmark.audit import audit_task
    from benchmark.cli import main

    data_root, tasks = toy_wsi
    assert main(["audit", "--task", "toy", "--data-root", str(data_root)]) == 0  # the synthetic cohort is clean
    capsys.readouterr()
    omics = data_root / "omics" / "tcga_toy_all_clean.csv.zip"
    slides = pd.read_csv(omics, dtype={"case_id": str, "slide_id": str})
    slides.loc[1, "slide_id"] = "TCGA-ZZ-7777-01Z-00-DX1.svs"  # a TCGA barcode naming another patient
    two = slides.index[slides["case_id"].duplicated(keep=False)][0]
    slides.loc[two, "censorship"] = 1 - slides.loc[two, "censorship"]
    slides.to_csv(omics, index=False)
    folder = data_root / "features" / "toy-encoder"
    shutil.copy(case("I04-nan-patch-features.h5"), next(folder.glob("TCGA-0003-DX1*.h5")))
    shutil.copy(case("I03-zero-patch-bag.h5"), next(folder.glob("TCGA-0004-DX1*.h5")))
    report = audit_task(load_task("toy"), data_root)
    found = {(f.severity, f.check) for f in report.findings}
    assert {("error", "labels"), ("error", "slides"), ("error", "bags"), ("warning", "bags")} <= found
    details = "\n".join(f.detail for f in report.findings)
    assert f"patient '{slides.loc[two, 'case_id']}' has rows that disagree on field 'censorship'" in details
    assert f"slide 'TCGA-ZZ-7777-01Z-00-DX1.svs' is filed under patient '{slides.loc[1, 'case_id']}'" in details
    assert "1 of 8 patches hold non-finite features" in details
    assert "only empty bags" in details and "'TCGA-CD-0004'" in details
    assert main(["audit", "--task", "toy", "--data-root", str(data_root)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("audit of task 'toy': ") and "severity" in out
    # mmbench run refuses the task, pointing at the audit
    assert main(["run", "--task", "toy", "--method", "baselines/coxph", "--data-root", str(data_root),
                 "--out", str(data_root / "runs")]) == 2
    assert "`mmbench audit --task toy` lists every data problem" in capsys.readouterr().err


def test_audit_exits_2_on_unreadable_input(toy, tmp_path, capsys):
    from benchmark.cli import main

    with pytest.raises(SystemExit) as exit_info:  # a --data-root that is not a folder: argparse's usage error
        main(["audit", "--task", "toy", "--data-root", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2 and "argument --data-root: " in capsys.readouterr().err
    empty = tmp_path / "empty-root"
    empty.mkdir()
    assert main(["audit", "--task", "toy", "--data-root", str(empty)]) == 2  # a folder without the cohort file
    assert "mmbench: error:" in capsys.readouterr().err


def test_audit_hints_at_a_flipped_censorship_column(toy, capsys):
    from benchmark.audit import audit_task

    data_root, _ = toy
    omics = data_root / "omics" / "tcga_toy_all_clean.csv.zip"
    slides = pd.read_csv(omics)
    # flip: the long-followed patients become 'events'
    slides["censorship"] = (slides["survival_months"] < slides["survival_months"].quantile(0.3)).astype(int)
    slides.to_csv(omics, index=False)
    report = audit_task(load_task("toy"), data_root)
    hint = [f for f in report.findings if f.check == "events" and f.severity == "warning"]
    assert hint and "censorship column mean the opposite" in hint[0].detail


# --------------------------------------------------------------------------- kind 6: packaged labels


def test_a_hostile_method_gets_no_packaged_labels_from_the_fold_sandbox(tmp_path):
    import json

    from benchmark.runner import RunConfig, run
    from benchmark.worker import sandbox_available
    from conftest import METHODS

    if not sandbox_available():
        pytest.skip("no Landlock on this kernel: the worker could read installed package data (see README)")
    result = run(RunConfig(task="cardio-trace", method=METHODS / "hostile-public", out=tmp_path / "runs", folds=[0]))
    reason = result.failures[0]["reason"]
    assert reason.startswith("fit raised RuntimeError: REPORT "), reason[:300]
    report = json.loads(reason.split("REPORT ", 1)[1])
    assert report["survset_loader"].startswith("refused"), report  # was 1878 TRACE rows (Harrell C 1.000)
    assert report["sksurv_loader"].startswith("refused"), report
    assert report["readable_files"] == []


def test_validate_flags_a_submission_folder_carrying_the_task_labels(toy, tmp_path):
    from benchmark.validate import validate_method
    from conftest import METHODS

    data_root, _ = toy
    folder = tmp_path / "sneaky"
    shutil.copytree(METHODS / "budget-blind", folder)
    (folder / "method.toml").write_text((folder / "method.toml").read_text().replace(
        "[params]", 'paper = "none: a test method"\n[params]'))
    clean = validate_method(folder, "toy", data_root=data_root)
    assert clean.ok, clean.problems
    assert "carries no labels of task 'toy'" in clean.checks
    cohort = load_cohort(load_task("toy"), data_root)
    (folder / "data").mkdir()
    pd.DataFrame({"pid": cohort.patient_id, "months": np.round(cohort.time, 2), "dead": cohort.event}).to_csv(
        folder / "data" / "lookup.csv", index=False)
    pd.DataFrame({"pid": cohort.patient_id, "noise": np.arange(cohort.n) + 0.5}).to_csv(folder / "ids_only.csv",
                                                                                          index=False)
    flagged = validate_method(folder, "toy", data_root=data_root)
    assert flagged.problems == [f"{folder}/data/lookup.csv: 60 of the cohort's patients with their times (columns "
                                "'pid', 'months'): a submission must not carry a task's labels"]


def test_leaderboard_says_whose_labels_are_public():
    from benchmark.loaders import labels_public_note

    assert labels_public_note("cardio-trace").startswith("Labels of `cardio-trace` are public (installed with SurvSet)")
    assert "scikit-survival" in labels_public_note("geo-gse7390")
    assert "TCGA open access" in labels_public_note("tcga-brca")


def test_i03_run_json_names_the_empty_bag_files(toy_wsi, tmp_path):
    import json

    from benchmark.runner import RunConfig, run
    from conftest import METHODS

    data_root, _ = toy_wsi
    target = next((data_root / "features" / "toy-encoder").glob("TCGA-0004-DX1*.h5"))
    shutil.copy(case("I03-zero-patch-bag.h5"), target)
    cohort = load_cohort(load_task("toy"), data_root)
    bags = cohort.modalities["wsi"]
    assert not bags.has_bag()[bags.index.get_loc("TCGA-CD-0004")]  # a patient without a slide
    result = run(RunConfig(task="toy", method=METHODS / "oracle", data_root=data_root, out=tmp_path / "runs", folds=[0]))
    assert json.loads((result.run_dir / "run.json").read_text())["empty_bags"] == [str(target.resolve())]
