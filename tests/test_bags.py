"""Bags, the typed ``wsi`` modality: construction checks, row selection, reading, and its place in a Cohort.

Bags here are SYNTHETIC (small ``.h5`` files written by the tests).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from benchmark.bags import Bags, check_bags
from benchmark.cohort import Cohort
from benchmark.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _h5(path: Path, features: np.ndarray) -> str:
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=features)
        f.create_dataset("coords", data=np.zeros((len(features), 2), np.int64))
    return str(path)


@pytest.fixture
def three(tmp_path) -> Bags:
    """A: two files (2 + 3 patches, float16 then float32), B: none, C: one file (4 patches); D = 3."""
    a1 = _h5(tmp_path / "A1.h5", np.arange(6, dtype=np.float16).reshape(2, 3))
    a2 = _h5(tmp_path / "A2.h5", 100 + np.arange(9, dtype=np.float32).reshape(3, 3))
    c1 = _h5(tmp_path / "C1.h5", -np.arange(12, dtype=np.float32).reshape(4, 3))
    return Bags(np.array(["A", "B", "C"]), ((a1, a2), (), (c1,)), np.array([5, 0, 4]), empty_files=("/x/E.h5",))


@pytest.mark.parametrize("ids, paths, counts, message", [
    (["A", "B"], (("a.h5",),), [3, 0], "2 patients, 1 path tuples and 2 patch counts"),
    (["A", "A"], (("a.h5",), ()), [3, 0], "duplicate patient 'A'"),
    (["A", "B"], (("a.h5",), ()), [3, -1], "patient 'B' has a negative patch count"),
    (["A", "B"], (("a.h5",), ()), [3, 2], "patient 'B' has patches but no slide file"),
    (["A", "B"], (("a.h5",), ("b.h5",)), [3, 0], "patient 'B' has slide files but 0 patches"),
    (["A"], (("a.h5",),), [2.5], "n_patches must be integers"),
])
def test_inconsistent_bags_are_one_line_data_errors(ids, paths, counts, message):
    with pytest.raises(DataError, match=re.escape(message)) as info:
        Bags(np.array(ids), paths, np.array(counts))
    assert "\n" not in str(info.value)


def test_fields_are_coerced_to_their_documented_types():
    bags = Bags(["A", "B"], [["a.h5"], []], np.array([3, 0], np.int32))
    assert bags.patient_id.dtype.kind == "U" and bags.paths == (("a.h5",), ())
    assert bags.n_patches.dtype == np.int64 and len(bags) == 2
    assert bags.index.equals(pd.Index(["A", "B"], name="patient_id")) and bags.index.name == "patient_id"
    empty = Bags(np.zeros(0, str), (), np.zeros(0, np.int64))
    assert len(empty) == 0 and empty.first_file() is None and empty.folder() is None


def test_take_select_and_reindex_keep_paths_and_counts_aligned(three):
    taken = three.take([2, 0])
    assert list(taken.patient_id) == ["C", "A"] and taken.n_patches.tolist() == [4, 5]
    assert taken.paths == (three.paths[2], three.paths[0]) and taken.empty_files == ("/x/E.h5",)
    assert three.select(["C", "B"]).n_patches.tolist() == [4, 0] and three.select(["C", "B"]).paths[1] == ()
    with pytest.raises(DataError, match="patient 'Z' is not in these bags"):
        three.select(["A", "Z"])
    again = three.reindex(["Z", "C", "A"])  # unknown patient: no bag (pretraining corpus)
    assert list(again.patient_id) == ["Z", "C", "A"] and again.n_patches.tolist() == [0, 4, 5]
    assert again.paths == ((), three.paths[2], three.paths[0]) and again.has_bag().tolist() == [False, True, True]
    assert Bags(np.zeros(0, str), (), np.zeros(0, np.int64)).reindex(["Q"]).n_patches.tolist() == [0]


def test_concat_pools_patients_and_empty_files_and_refuses_a_patient_twice(three):
    other = Bags(np.array(["D"]), (("d.h5",),), np.array([7]), empty_files=("/x/F.h5", "/x/E.h5"))
    both = Bags.concat([three, other])
    assert list(both.patient_id) == ["A", "B", "C", "D"] and both.n_patches.tolist() == [5, 0, 4, 7]
    assert both.paths[3] == ("d.h5",) and both.empty_files == ("/x/E.h5", "/x/F.h5")
    with pytest.raises(DataError, match="duplicate patient 'A'"):
        Bags.concat([three, three.take([0])])


def test_read_gives_the_files_rows_in_order_as_float32(three):
    bag = three.read(0)
    assert bag.dtype == np.float32 and bag.shape == (5, 3)
    assert bag[:, 0].tolist() == [0.0, 3.0, 100.0, 103.0, 106.0]
    out = np.full((4, 3), np.nan, np.float32)
    assert three.read(2, out) is out and out[:, 2].tolist() == [-2.0, -5.0, -8.0, -11.0]  # float32: read_direct
    assert three.read(1).shape == (0, 0) and three.read(1, np.zeros((0, 3), np.float32)).shape == (0, 3)
    with pytest.raises(DataError, match="A2.h5: bag has more patches than the 4 rows given"):
        three.read(0, np.zeros((4, 3), np.float32))
    assert three.has_bag().tolist() == [True, False, True] and three.lengths().tolist() == [5, 0, 4]
    assert three.feature_dim() == 3 and three.folder() == Path(three.paths[0][0]).parent
    from benchmark.bags import feature_dim

    assert feature_dim(three) == 3  # the form the baselines call
    with pytest.raises(DataError, match="modality 'slides' is not a bag modality .*got DataFrame"):
        feature_dim(pd.DataFrame({"x": [1.0]}), "slides")


def test_read_and_feature_dim_name_an_unreadable_file(tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_text("not hdf5")
    bags = Bags(np.array(["A"]), ((str(broken),),), np.array([2]))
    with pytest.raises(DataError, match="broken.h5: cannot read patch features"):
        bags.read(0)
    with pytest.raises(DataError, match="broken.h5: cannot read patch features"):
        bags.feature_dim()
    with pytest.raises(DataError, match="no patient of this cohort view has a slide file"):
        bags.take([]).feature_dim()


def test_to_frame_and_type_check(three):
    frame = three.to_frame()
    assert frame.loc["A"].tolist() == [2, 5] and frame.loc["B"].tolist() == [0, 0] and frame.index.name == "patient_id"
    assert check_bags(three) is three
    with pytest.raises(DataError, match="modality 'slides' is not a bag modality .* got DataFrame"):
        check_bags(frame, "slides")


def test_cohort_take_and_select_carry_bags_with_their_patients(three):
    rna = pd.DataFrame({"g": [1.0, 2.0, 3.0]}, index=pd.Index(["A", "B", "C"], name="patient_id"))
    cohort = Cohort("toy", np.array(["A", "B", "C"]), {"rna": rna, "wsi": three}, {"rna": "rna", "wsi": "wsi"},
                    time=np.array([1.0, 2.0, 3.0]), event=np.array([1, 0, 1], np.int8))
    view = cohort.take(np.array([2, 1]))
    bags = view.modalities["wsi"]
    assert isinstance(bags, Bags) and list(bags.patient_id) == ["C", "B"] == list(view.patient_id)
    assert bags.n_patches.tolist() == [4, 0] and bags.paths == (three.paths[2], ())
    assert view.modalities["rna"]["g"].tolist() == [3.0, 2.0] and view.time.tolist() == [3.0, 2.0]
    chosen = cohort.select(["A"]).with_modalities(["wsi"])
    assert list(chosen.modalities) == ["wsi"] and chosen.modalities["wsi"].read(0).shape == (5, 3)
    sent = pickle.loads(pickle.dumps(view.without_labels()))  # what the worker receives
    assert sent.modalities["wsi"].paths == bags.paths and sent.modalities["wsi"].n_patches.tolist() == [4, 0]


def test_cohort_refuses_a_wsi_modality_of_the_wrong_type_or_rows(three):
    ids = np.array(["A", "B", "C"])
    with pytest.raises(DataError, match="modality 'wsi' \\(kind wsi\\) must be benchmark.bags.Bags, got DataFrame"):
        Cohort("toy", ids, {"wsi": three.to_frame()}, {"wsi": "wsi"})
    with pytest.raises(DataError, match="modality 'wsi' has 2 rows for 3 patients"):
        Cohort("toy", ids, {"wsi": three.take([0, 1])}, {"wsi": "wsi"})
    with pytest.raises(DataError, match="modality 'wsi' holds the bags of other patients or another order"):
        Cohort("toy", ids, {"wsi": three.take([2, 1, 0])}, {"wsi": "wsi"})
    with pytest.raises(DataError, match="modality 'rna' \\(kind rna\\) must be a DataFrame, got Bags"):
        Cohort("toy", ids, {"rna": three}, {"rna": "rna"})


def test_no_module_handles_bag_paths_as_joined_strings():
    """Bags own the slide files of a patient: no engine or baseline module joins or splits them on '|' again.

    The only '|'-split left is of the TCGA loader's ``slide_ids`` grouping column (slide *ids*), in
    :func:`benchmark.bags.build_bags`.
    """
    offenders = []
    for path in sorted([*(REPO / "benchmark").rglob("*.py"), *(REPO / "baselines").rglob("*.py"),
                        *(REPO / "tests" / "methods").rglob("*.py")]):
        text = path.read_text()
        for word in ("bag_paths", "read_bag(", "bag_lengths(", "wsi_frame(", "BAG_COLUMNS", '["n_patches"]',
                     'attrs.get("empty_bags"', 'attrs["empty_bags"]'):
            if word in text:
                offenders.append(f"{path.relative_to(REPO)}: {word}")
    splits = [f"{p.relative_to(REPO)}" for p in [*(REPO / "benchmark").rglob("*.py"), *(REPO / "baselines").rglob("*.py")]
              if 'split("|")' in p.read_text() and p.relative_to(REPO).as_posix() not in ("benchmark/params.py",
                                                                                        "benchmark/bags.py")]
    assert not offenders and not splits, offenders + splits
    assert (REPO / "benchmark" / "bags.py").read_text().count('split("|")') == 1  # slide ids, in build_bags
