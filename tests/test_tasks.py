"""Task files, registry, cohort loading and split sets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.cohort import validate_labels
from benchmark.errors import DataError, TaskError
from benchmark.loaders import load_cohort, one_hot
from benchmark.splits import (leaky_patients, load_split_set, make_split_table, patients_in_several_roles,
                              verify_split_set)
from benchmark.task import find_tasks, load_task
from conftest import REPO, toy_slides, write_toy

TCGA = "blca brca coadread gbmlgg hnsc kirc kirp lihc luad lusc paad skcm stad ucec".split()
EMBEDDED = ["geo-gse1992", "geo-gse4335", "geo-gse7390", "cardio-trace", "cardio-grace", "cardio-whas500",
            "cardio-smart", "cardio-framingham"]


def test_registry_holds_every_required_task():
    names = set(find_tasks())
    assert {f"tcga-{c}" for c in TCGA} <= names
    assert set(EMBEDDED) <= names
    assert {"tcga-brca-dss", "tcga-brca-pfi", "tcga-stad-dss"} <= names


@pytest.mark.parametrize("name", find_tasks())
def test_every_task_file_parses_with_pinned_splits(name):
    task = load_task(name)
    assert task.name == name
    assert task.horizons.max() <= task.time_grid[-1]
    for split in task.splits.values():
        assert len(split.sha256) == 64, f"{name}: split set {split.name} is not pinned"
    assert task.splits["own"].file == f"splits/{name}.csv"
    if task.source == "tcga":
        assert task.splits["mcat" if task.endpoint == "OS" else "own"]
        assert {"clinical", "mut", "wsi"} <= set(task.modalities)


# (task, patients, events, modality widths) counted from the shipped data
EMBEDDED_COUNTS = {
    "geo-gse1992": (124, 35, {"clinical": 13, "rna": 15528}),  # 4 '=missing' dummies gone (I08)
    "geo-gse7390": (198, 51, {"clinical": 8, "rna": 76}),
    # SurvSet's 'missing' level is NaN in every dummy, not a category (issue 10, I08): no '=missing' columns
    "cardio-smart": (3873, 460, {"demographics": 3, "lifestyle": 7, "history": 8, "vitals": 7, "laboratory": 10,
                                 "imaging": 3}),
    "cardio-trace": (1878, 958, {"demographics": 3, "history": 6, "imaging": 1}),
}


@pytest.mark.parametrize("name", sorted(EMBEDDED_COUNTS))
def test_embedded_task_loads_offline_one_row_per_patient(name):
    n, events, widths = EMBEDDED_COUNTS[name]
    cohort = load_cohort(load_task(name))
    assert cohort.n == n and int(cohort.event.sum()) == events
    assert {m: f.shape[1] for m, f in cohort.modalities.items()} == widths
    assert len(set(cohort.patient_id)) == n
    assert (cohort.time >= 0).all() and set(np.unique(cohort.event)) <= {0, 1}


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_split_sets_verify(name):
    task = load_task(name)
    cohort = load_cohort(task)
    split = load_split_set(task, "own")
    assert verify_split_set(split, cohort.patient_id, cohort.event, note=task.splits["own"].min_events_note) == []
    assert split.folds == [0, 1, 2, 3, 4]
    test_sizes = [len(split.members(k, "test")) for k in split.folds]
    assert sum(test_sizes) == cohort.n
    val_share = len(split.members(0, "val")) / (cohort.n - test_sizes[0])
    assert 0.13 <= val_share <= 0.17


def test_tcga_brca_patient_level_and_event_convention(tcga_root):
    task = load_task("tcga-brca")
    cohort = load_cohort(task, tcga_root)
    # data README: BRCA has 1022 slides, 956 patients, 14 % events; event = 1 - censorship
    assert cohort.n == 956
    assert round(float(cohort.event.mean()), 2) == 0.14
    slides = pd.read_csv(tcga_root / "omics" / "tcga_brca_all_clean.csv.zip",
                         usecols=["case_id", "censorship"]).drop_duplicates("case_id").set_index("case_id")
    expected_events = 1 - slides.loc[cohort.patient_id, "censorship"].to_numpy()
    assert (cohort.event == expected_events).all()
    assert sum(len(s.split("|")) for s in cohort.groups["slide_ids"]) == 1022
    assert cohort.modalities["rna"].shape == (956, 1558)


def test_tcga_dss_endpoint_reads_survpath_metadata(tcga_root):
    cohort = load_cohort(load_task("tcga-brca-dss"), tcga_root)
    meta = pd.read_csv(tcga_root / "survpath" / "metadata" / "tcga_brca.csv").drop_duplicates("case_id")
    meta = meta.set_index("case_id").loc[cohort.patient_id]
    assert np.allclose(cohort.time, meta["survival_months_dss"])
    assert (cohort.event == 1 - meta["censorship_dss"].to_numpy()).all()


@pytest.mark.parametrize("name", [f"tcga-{c}" for c in ("blca", "brca", "gbmlgg", "luad", "ucec")])
def test_tcga_split_sets_verify(name, tcga_root):
    task = load_task(name)
    cohort = load_cohort(task, tcga_root)
    for split_name in task.splits:
        split = load_split_set(task, split_name, tcga_root)
        assert verify_split_set(split, cohort.patient_id, cohort.event) == [], split_name
    site = load_split_set(task, "site", tcga_root).table
    site = site.assign(site=site["patient_id"].str.slice(5, 7))
    roles_per_site = site.groupby(["fold", "site"])["role"].nunique()
    assert roles_per_site.max() == 1  # no tissue-source site in two roles of a fold


def test_published_family_marks_val_as_test(tcga_root):
    task = load_task("tcga-blca")
    split = load_split_set(task, "mcat", tcga_root)
    assert split.val_is_test
    first = pd.read_csv(tcga_root / "splits" / "mcat-5fold" / "tcga_blca" / "splits_0.csv")
    assert list(split.members(0, "test")) == list(first["val"].dropna())
    assert list(split.members(0, "val")) == list(split.members(0, "test"))


def test_split_hash_mismatch_is_a_clear_error(toy):
    _, tasks = toy
    path = tasks / "splits" / "toy.csv"
    path.write_text(path.read_text().replace("test", "train", 1))
    with pytest.raises(TaskError, match=r"toy.csv: sha256 .* does not match the pinned"):
        load_split_set(load_task("toy"), "own")


def test_make_split_table_is_patient_level_seeded_and_stratified():
    rng = np.random.default_rng(1)
    n = 300
    ids = np.array([f"P{i}" for i in range(n)])
    time, event = rng.exponential(30, n), (rng.random(n) < 0.3).astype(int)
    a = make_split_table(ids, time, event, seed=3)
    b = make_split_table(ids, time, event, seed=3)
    assert a.equals(b)
    assert not a.equals(make_split_table(ids, time, event, seed=4))
    assert patients_in_several_roles(a) == []
    tests = a[a.role == "test"]
    assert tests.patient_id.is_unique and len(tests) == n
    events_by_id = dict(zip(ids, event))
    per_fold = tests.groupby("fold")["patient_id"].apply(lambda s: sum(events_by_id[p] for p in s))
    assert per_fold.max() - per_fold.min() <= 2  # stratified on the event


def test_site_preserving_split_keeps_groups_in_one_role():
    rng = np.random.default_rng(2)
    n = 400
    ids = np.array([f"P{i}" for i in range(n)])
    groups = np.array([f"S{i % 23}" for i in range(n)])
    table = make_split_table(ids, rng.exponential(30, n), (rng.random(n) < 0.4).astype(int), groups=groups)
    table["group"] = table["patient_id"].map(dict(zip(ids, groups)))
    assert table.groupby(["fold", "group"])["role"].nunique().max() == 1


def test_slide_level_split_leak_is_detected():
    # case C17 of ../shared/cases: a slide-level split puts P1 in train and test
    slide_to_patient = {"s1a": "P1", "s1b": "P1", "s1c": "P1", "s2": "P2", "s3": "P3", "s4": "P4"}
    split = {"train": ["s1a", "s2", "s3"], "test": ["s1b", "s1c", "s4"]}
    assert leaky_patients(split, slide_to_patient) == ["P1"]
    table = pd.DataFrame({"patient_id": ["P1", "P1", "P2"], "fold": [0, 0, 0], "role": ["train", "test", "val"]})
    assert patients_in_several_roles(table) == [(0, "P1")]


def test_verify_reports_problems():
    ids = np.array(["A", "B", "C", "D"])
    table = pd.DataFrame({"patient_id": ["A", "B", "C", "A", "D"], "fold": [0, 0, 0, 0, 0],
                          "role": ["train", "val", "test", "test", "train"]})
    from benchmark.splits import SplitSet

    problems = verify_split_set(SplitSet("own", table, "x"), ids, np.array([1, 0, 1, 1]))
    assert "patient 'A' has two roles in fold 0" in problems
    assert any("holds 0 events" in p for p in problems)


def test_slide_rows_are_reduced_to_patients(toy):
    data_root, _ = toy
    cohort = load_cohort(load_task("toy"), data_root)
    slides = toy_slides()
    assert cohort.n == slides.case_id.nunique() == 60
    assert len(slides) == 80
    first = cohort.patient_id[0]
    assert cohort.groups["slide_ids"][0] == "TCGA-0000-DX1.svs|TCGA-0000-DX2.svs"
    assert first == "TCGA-CD-0000"
    assert list(cohort.modalities["clinical"].columns) == ["age", "is_female", "oncotree_code=IDC",
                                                          "oncotree_code=ILC", "time_copy"]


@pytest.mark.parametrize("field,value,message", [
    ("survival_months", -1.0, "field 'survival_months' is negative (-1.0) for patient 'TCGA-CD-0004'"),
    ("survival_months", np.nan, "field 'survival_months' is missing or not finite for patient 'TCGA-CD-0004'"),
    ("censorship", 2, "field 'censorship' must be 0 or 1 (1 = censored), got 2 for patient 'TCGA-CD-0004'"),
    ("age", "old", "field 'age' is not numeric for patient 'TCGA-CD-0004'"),
])
def test_bad_labels_and_fields_name_the_patient(tmp_path, monkeypatch, field, value, message):
    slides = toy_slides()
    slides[field] = slides[field].astype(object)
    slides.loc[slides.case_id == "TCGA-CD-0004", field] = value
    data_root, tasks = write_toy(tmp_path, toy_slides())
    slides.to_csv(data_root / "omics" / "tcga_toy_all_clean.csv.zip", index=False)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    with pytest.raises(DataError) as info:
        load_cohort(load_task("toy"), data_root)
    assert message in str(info.value)
    assert "tcga_toy_all_clean.csv.zip" in str(info.value)


def test_slides_disagreeing_on_a_label_are_an_error(tmp_path, monkeypatch):
    slides = toy_slides()
    slides.loc[1, "survival_months"] = 99.0  # second slide of patient TCGA-CD-0000
    data_root, tasks = write_toy(tmp_path, slides)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    with pytest.raises(DataError, match="patient 'TCGA-CD-0000' has slides that disagree on field 'survival_months'"):
        load_cohort(load_task("toy"), data_root)


def test_duplicate_patients_are_an_error():
    with pytest.raises(DataError, match="duplicate patient 'b'"):
        validate_labels("file.csv", np.array(["a", "b", "b"]), [1, 2, 3], [0, 1, 0])


def test_missing_data_root_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.delenv("MMBENCH_DATA", raising=False)
    task = load_task("tcga-brca")
    with pytest.raises(DataError, match="pass --data-root DIR or set MMBENCH_DATA; no data root given"):
        load_cohort(task, None)
    with pytest.raises(DataError, match=r"omics/tcga_brca_all_clean.csv.zip under the data root"):
        load_cohort(task, tmp_path)


def test_one_hot_keeps_missing_as_nan():
    frame = one_hot(pd.Series(["b", None, "a"]), "x")
    assert list(frame.columns) == ["x=a", "x=b"]
    assert frame.iloc[0].tolist() == [0.0, 1.0]
    assert frame.iloc[1].isna().all()


def test_unknown_task_lists_close_names():
    with pytest.raises(TaskError, match="unknown task 'tcga-nope'.*tcga-blca"):
        load_task("tcga-nope")


def test_task_file_missing_field_is_named(tmp_path):
    text = (REPO / "tasks" / "geo-gse7390.toml").read_text().replace('endpoint = "DMFS"\n', "")
    (tmp_path / "broken.toml").write_text(text)
    with pytest.raises(TaskError, match="broken.toml: field 'endpoint' is missing"):
        load_task("broken", tmp_path)


def test_a_patient_in_two_test_folds_is_a_structure_problem_run_refuses():
    from benchmark.splits import SplitSet, structure_problems

    ids = np.array(["A", "B", "C", "D"])
    table = pd.DataFrame({"patient_id": ["A", "B", "C", "D", "A", "B", "C", "D"], "fold": [0, 0, 0, 0, 1, 1, 1, 1],
                          "role": ["test", "train", "val", "train", "test", "val", "train", "train"]})
    assert structure_problems(SplitSet("own", table, "x"), ids) == ["patient 'A' is in 2 test folds",
                                                                    "3 patients are in no test fold, e.g. 'B'"]
    table.loc[table["fold"] == 1, "role"] = ["train", "test", "test", "test"]
    assert structure_problems(SplitSet("own", table, "x"), ids) == []
    # a patient added to the cohort after the split file was written would be left out unseen: refused
    assert structure_problems(SplitSet("own", table, "x"), np.array([*ids, "PNEW"])) == [
        "1 patients are in no test fold, e.g. 'PNEW'"]
    # published families (val is the test fold) are checked on train/val only
    assert structure_problems(SplitSet("mcat", table, "x", val_is_test=True), ids) == []


def test_an_event_given_as_text_is_shown_as_written():
    with pytest.raises(DataError, match=r"cohort.csv: field 'status' must be 0 or 1, got 'yes' for patient 'B'"):
        validate_labels("cohort.csv", np.array(["A", "B", "C"]), [1.0, 2.0, 3.0], ["1", "yes", "0"],
                        event_name="status")
    with pytest.raises(DataError, match=r"got an empty value for patient 'C'"):
        validate_labels("cohort.csv", np.array(["A", "B", "C"]), [1.0, 2.0, 3.0], [1, 0, None])


def test_a_task_folder_that_does_not_exist_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MMBENCH_TASKS", str(tmp_path / "my-taks"))
    with pytest.raises(TaskError, match=r"\$MMBENCH_TASKS names '.*my-taks', which is not a folder"):
        find_tasks()


def test_a_time_written_as_text_and_a_numeric_event_are_shown_as_written():
    with pytest.raises(DataError, match=r"field 'months' is not a number \('abc'\) for patient 'B'"):
        validate_labels("cohort.csv", np.array(["A", "B"]), ["1.5", "abc"], [1, 0], time_name="months")
    with pytest.raises(DataError, match=r"must be 0 or 1, got 2 for patient 'A'"):
        validate_labels("cohort.csv", np.array(["A", "B"]), [1.5, 2.0], np.array([2, 0], dtype=np.int64))
