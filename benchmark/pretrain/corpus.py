"""Pretraining corpora: unlabelled (or other-cohort-labelled) patients built per fold, leak-proof.

A :class:`Corpus` is what a method's ``pretrain(corpus, ctx)`` receives. The
runner builds it for each fold with :func:`build_pretrain_corpus` from a
declared source and removes the fold's **test** patients and its **val**
patients (val is kept only in the documented transductive opt-in,
``pretrain_transductive = true``, which run.json records and the leaderboard
marks). The removal is by patient id across every source file, so a TCGA
patient of the target cohort's test fold is left out even where another
cohort's file also lists them.

Sources
-------
``same-cohort``
    The fold's own training patients (all of them, whatever the label budget),
    without labels; plus val in the transductive mode.
``pancancer``
    Every ``<data-root>/omics/tcga_<cohort>_all_clean.csv.zip`` present (the
    14 TCGA cohorts), one row per patient, pooled on a shared vocabulary: the
    union of all cohorts' columns (genes by their column names ``<GENE>_rnaseq``,
    ``<GENE>_cnv``, ``<GENE>_mut``; clinical ``age``, ``is_female``,
    ``oncotree_code``). A gene a cohort did not measure is **not observed**
    (NaN, ``Corpus.observed`` False), never filled with a value.
    Each file is read by the task loader's reader
    (:func:`benchmark.rawfiles.read_tcga_patients`): a file the loader would
    refuse (a patient with a missing or negative time, a censorship other than
    0/1, slides that disagree on a field) stops the corpus with the same error;
    no patient is dropped in silence.
``pan-cardio``
    The five cardiovascular SurvSet cohorts (TRACE, grace, whas500, smarto,
    Framingham) pooled on the harmonised vocabulary of :data:`CARDIO_VARIABLES`
    (age, female sex, systolic/diastolic BP, BMI, diabetes, heart failure,
    total cholesterol, length of stay, heart rate); a variable a cohort lacks
    is not observed. Read by :func:`benchmark.rawfiles.read_survset`, as the loader reads them.

Encoder compatibility (how a corpus reaches the target task's encoders)
------------------------------------------------------------------------
The corpus is **aligned to the target task's modalities**: it has the task's
modality names (``rna``, ``cnv``, ``mut``, ``clinical`` or the cardiovascular
groups) and exactly the task's columns, so an encoder built for the task reads
corpus rows unchanged. A target column is looked up in each pooled cohort:

* TCGA omics: by gene symbol (:func:`benchmark.nn.encoders.gene_symbol` strips
  ``_rnaseq`` and SurvSet's ``num_HS_``), within the same molecular kind (a
  GEO ``num_HS_TP53`` column reads the TCGA ``TP53_rnaseq`` values);
* one-hot columns ``<field>=<level>``: 1/0 from the pooled cohort's raw field
  (a cohort that records the field but never has the level reads 0, observed);
* cardiovascular columns: through :data:`CARDIO_VARIABLES` (unit conversion
  included: SMART cholesterol mmol/L x 38.67 -> mg/dL); binary one-hots of the
  other level read ``1 - x``.

Genes of the pooled vocabulary that the target lacks have no input unit in its
encoders and are left out; target columns no pooled cohort has are observed in
the target's own patients only. Patient ids: TCGA case ids as they are; for
pan-cardio, the target cohort's own patients keep the task's ids and the other
cohorts' are ``<dataset>:<pid>``.

``supervised-pancancer`` corpora (``labels=True``) hold the labels of the
*other* cohorts only: the target cohort's patients are left out entirely.

Slides (the ``wsi`` modality)
-----------------------------
When the target cohort has a ``wsi`` modality (:class:`benchmark.bags.Bags`),
the corpus carries the bags of its patients under the same name and kind (one
row per corpus patient, in corpus order). The bags themselves stay on disk and
are read lazily by the strategies (:mod:`benchmark.pretrain.slides`).

* ``same-cohort``: the rows of the fold's corpus patients (train; val only in
  the transductive mode), from the cohort's own bags.
* ``pancancer``: target-cohort patients keep the cohort's rows; a patient of
  another TCGA cohort gets a bag from the slide files of the **same feature
  folder** (``<data-root>/features/<encoder>``, and the run's ``dx1_only``
  choice), built with :func:`benchmark.bags.build_bags` from that cohort's
  slide ids.
* ``pan-cardio``: only the target's own patients can have bags.

A patient without a slide file is **missing** (no path, 0 ``n_patches``),
never given a fake bag. The same ``protected`` rule removes the fold's test
(and val) patients, bags included.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.bags import Bags
from benchmark.cohort import Cohort, take_rows
from benchmark.errors import DataError
from benchmark.integrity import is_missing_marker, missing_as_nan
from benchmark.rawfiles import read_survset, read_tcga_patients

SOURCES = ("same-cohort", "pancancer", "pan-cardio")
CARDIO_DATASETS = ("TRACE", "grace", "whas500", "smarto", "Framingham")

# Harmonised cardiovascular vocabulary: variable -> {SurvSet dataset: (column, code)}.
# code is ("num", factor): value x factor in the variable's unit; or ("is", level): 1 when column == level.
# Sex codings, checked against the data (tests/test_pretrain_corpus.py): WHAS500 gender 1 = female (documented;
# 39 % of patients, 8 years older than men, as women with MI are); SMART (hdnom) and Framingham
# (riskCommunicator) sex 1 = male, 2 = female (25 % / 56 % female; SMART women 13 cm shorter). TRACE: R timereg
# documents sex 1 = female, but in SurvSet's copy sex == 1 is 70 % of the patients and 6 years *younger*
# (65 vs 71): that is the men of an MI registry (TRACE reports about 1/3 women), so 0 = female here.
CARDIO_VARIABLES: dict[str, dict[str, tuple[str, tuple]]] = {
    "age_years": {d: ("num_age", ("num", 1.0)) for d in CARDIO_DATASETS},
    "female": {"TRACE": ("fac_sex", ("is", 0)), "whas500": ("fac_gender", ("is", 1)),
               "smarto": ("fac_sex", ("is", 2)), "Framingham": ("fac_sex", ("is", 2))},
    "systolic_bp_mmhg": {"grace": ("num_sysbp", ("num", 1.0)), "whas500": ("num_sysbp", ("num", 1.0)),
                         "smarto": ("num_systbp", ("num", 1.0)), "Framingham": ("num_sbp", ("num", 1.0))},
    "diastolic_bp_mmhg": {"whas500": ("num_diasbp", ("num", 1.0)), "smarto": ("num_diastbp", ("num", 1.0)),
                          "Framingham": ("num_dbp", ("num", 1.0))},
    "bmi_kg_m2": {"whas500": ("num_bmi", ("num", 1.0)), "smarto": ("num_bmi", ("num", 1.0)),
                  "Framingham": ("num_bmi", ("num", 1.0))},
    "diabetes": {"TRACE": ("fac_diabetes", ("is", 1)), "smarto": ("fac_diabetes", ("is", "1"))},
    "heart_failure": {"TRACE": ("fac_chf", ("is", 1)), "whas500": ("fac_chf", ("is", 1))},
    "cholesterol_mg_dl": {"smarto": ("num_chol", ("num", 38.67)), "Framingham": ("num_scl", ("num", 1.0))},
    "length_of_stay_days": {"grace": ("num_los", ("num", 1.0)), "whas500": ("num_los", ("num", 1.0))},
    "heart_rate_bpm": {"whas500": ("num_hr", ("num", 1.0))},
}
"""The pan-cardio table (documented in tasks/README.md): variable -> dataset -> (column, code)."""


@dataclass(frozen=True)
class Corpus:
    """Patients for ``pretrain``: aligned to the target task's modalities, never holding the fold's test patients.

    Attributes
    ----------
    source : str
        ``same-cohort``, ``pancancer`` or ``pan-cardio``.
    strategy : str
        The pretraining strategy the runner asks for (``masked``, ...).
    patient_id : ndarray of str, shape (n,)
    cohort : ndarray of str, shape (n,)
        Source cohort of each patient (TCGA code, SurvSet dataset or the task).
    modalities : dict of str to DataFrame
        The target task's modality names and columns, shape (n, p_m), float64;
        NaN = not observed (a missing value, or a variable the source cohort
        does not have). Never zero-filled. A ``wsi`` modality (kind ``wsi``)
        is a :class:`benchmark.bags.Bags` value instead (no bag = no slide file).
    kinds : dict of str to str
    time, event : ndarray or None
        Only in ``supervised-pancancer`` corpora: the other cohorts' labels
        (time in each cohort's own unit; use per-cohort strata).
    excluded : int
        Patients left out because they are the fold's test (or val) patients.
    transductive : bool
        Whether the fold's val patients (unlabelled) are in the corpus.
    """

    source: str
    strategy: str
    patient_id: np.ndarray
    cohort: np.ndarray
    modalities: dict[str, pd.DataFrame | Bags]
    kinds: dict[str, str]
    time: np.ndarray | None = None
    event: np.ndarray | None = None
    excluded: int = 0
    transductive: bool = False
    notes: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.patient_id)

    @property
    def has_labels(self) -> bool:
        return self.time is not None

    def observed(self, modality: str) -> np.ndarray:
        """Boolean mask (n, p_m): True where the value was measured (tabular modalities)."""
        return self.modalities[modality].notna().to_numpy()

    @property
    def bag_modality(self) -> str | None:
        """Name of the corpus's ``wsi`` modality (:class:`~benchmark.bags.Bags`), or None when it has none."""
        return next((m for m, kind in self.kinds.items() if kind == "wsi"), None)

    def modality_names(self, kinds: list[str] | None = None) -> list[str]:
        return [m for m in self.modalities if kinds is None or self.kinds[m] in kinds]

    def take(self, index: np.ndarray) -> "Corpus":
        index = np.asarray(index, dtype=np.int64)
        return replace(self, patient_id=self.patient_id[index], cohort=self.cohort[index],
                       modalities={k: take_rows(v, index) for k, v in self.modalities.items()},
                       time=None if self.time is None else self.time[index],
                       event=None if self.event is None else self.event[index])

    def sha256(self) -> str:
        """Hash of ids, cohorts, columns, values, bags (paths and patch counts) and labels.

        The pretraining cache key's corpus part.
        """
        digest = hashlib.sha256()
        digest.update(f"{self.source}|{self.n}".encode())
        digest.update("\x00".join(self.patient_id.astype(str)).encode())
        digest.update("\x00".join(self.cohort.astype(str)).encode())
        for name, block in self.modalities.items():
            if isinstance(block, Bags):  # files per patient and patch counts
                digest.update(f"{name}:{self.kinds[name]}:bags".encode())
                digest.update(json.dumps(block.paths).encode())
                digest.update(np.ascontiguousarray(block.n_patches, dtype=np.int64).tobytes())
                continue
            digest.update(f"{name}:{self.kinds[name]}:{'|'.join(map(str, block.columns))}".encode())
            digest.update(np.ascontiguousarray(block.to_numpy(dtype=np.float64)).tobytes())
        if self.time is not None:
            digest.update(self.time.astype(np.float64).tobytes() + self.event.astype(np.int8).tobytes())
        return digest.hexdigest()


def default_source(task) -> str:
    """``pan-cardio`` for a cardiovascular SurvSet task, else ``pancancer``."""
    return "pan-cardio" if task.source == "survset" and task.dataset in CARDIO_DATASETS else "pancancer"


def protected_ids(split, fold: int, transductive: bool = False) -> set[str]:
    """Patient ids that must never reach ``pretrain`` in ``fold``: test, and val unless transductive.

    A split family whose val fold is the test fold keeps val protected even when transductive.
    """
    roles = ("test",) if transductive and not split.val_is_test else ("test", "val")
    table = split.table[(split.table["fold"] == fold) & split.table["role"].isin(roles)]
    return set(table["patient_id"].astype(str))


def build_pretrain_corpus(source: str, strategy: str, task, cohort: Cohort, split, fold: int,
                          data_root: Path | None, transductive: bool = False, dx1_only: bool = False) -> Corpus:
    """The fold's pretraining corpus from ``source``, without the fold's test (and val) patients.

    Parameters
    ----------
    source : {"same-cohort", "pancancer", "pan-cardio", "auto"}
        ``auto`` = :func:`default_source`.
    strategy : str
        Recorded in the corpus; ``supervised-pancancer`` makes a labelled corpus of other cohorts.
    task : TaskSpec
    cohort : Cohort
        The task's full cohort (labels are read only for other cohorts, never from it).
    split : SplitSet
    fold : int
    data_root : Path or None
        TCGA data root (``pancancer``).
    transductive : bool
        Keep the fold's val patients, unlabelled (never with ``supervised-pancancer``).
    dx1_only : bool
        With a ``wsi`` modality: other cohorts' bags from their ``-DX1`` slide
        only (use the run's choice, as the cohort's own table was built).

    Returns
    -------
    Corpus

    Raises
    ------
    DataError
        Unknown source, a supervised corpus from ``same-cohort``, missing data
        root, or a pooled corpus that shares no observed column with the task.
    """
    source = default_source(task) if source == "auto" else source
    if source not in SOURCES:
        raise DataError(f"pretrain_corpus must be one of {', '.join(SOURCES)} or auto, got '{source}'")
    labelled = strategy == "supervised-pancancer"
    if labelled and transductive:
        raise DataError("pretrain_transductive cannot be combined with supervised-pancancer")
    protected = protected_ids(split, fold, transductive)
    columns = {m: list(f.columns) for m, f in cohort.modalities.items() if cohort.kinds[m] != "wsi"}
    wsi = next((m for m in cohort.modalities if cohort.kinds[m] == "wsi"), None)
    kinds = {m: cohort.kinds[m] for m in columns} | ({wsi: "wsi"} if wsi else {})
    if source == "same-cohort":
        if labelled:
            raise DataError("supervised-pancancer pretrains on other cohorts: use pretrain_corpus pancancer or pan-cardio")
        roles = ("train", "val") if transductive and not split.val_is_test else ("train",)
        table = split.table[(split.table["fold"] == fold) & split.table["role"].isin(roles)]
        ids = [p for p in table["patient_id"].astype(str) if p not in protected]
        view = cohort.select(ids)
        return Corpus(source, strategy, view.patient_id.astype(str), np.full(view.n, task.name, dtype=object),
                      {m: view.modalities[m] for m in kinds}, kinds, excluded=len(protected),
                      transductive=transductive and not split.val_is_test)
    if source == "pancancer":
        data_root = _require_root(data_root)
        own = task.dataset if task.source == "tcga" else None
        id_of = lambda code, pid: pid  # noqa: E731  TCGA case ids are global
    else:
        own = task.dataset if task.source == "survset" and task.dataset in CARDIO_DATASETS else None
        id_of = lambda code, pid: pid if code == own else f"{code}:{pid}"  # noqa: E731
    if labelled:  # a supervised corpus holds no target patient, even where another cohort's file lists them
        protected = protected | set(cohort.patient_id.astype(str))
    parts, excluded, seen = [], 0, set()
    aligned = aligned_pool(source, str(data_root) if source == "pancancer" else "", own,
                           tuple((m, tuple(cols)) for m, cols in columns.items()))
    for code, all_ids, all_frames, all_time, all_event in aligned:
        if labelled and code == own:
            continue  # supervised corpora never hold the target cohort
        ids = np.array([id_of(code, p) for p in all_ids], dtype=object)
        keep = np.array([i not in protected and i not in seen for i in ids], dtype=bool)
        excluded += int(sum(i in protected for i in ids))
        rows = np.flatnonzero(keep)
        ids = ids[keep]
        seen.update(ids)
        if not len(rows):
            continue
        frames = {m: frame.iloc[rows] for m, frame in all_frames.items()}
        parts.append((code, ids, frames, all_time[rows], all_event[rows]))
    if not parts:
        raise DataError(f"pretraining corpus '{source}' is empty for task '{task.name}' fold {fold}")
    modalities = {m: pd.concat([p[2][m] for p in parts]) for m in columns}
    patient_id = np.concatenate([p[1] for p in parts]).astype(str)
    for frame in modalities.values():
        frame.index = pd.Index(patient_id, name="patient_id")
    if wsi is not None:
        modalities[wsi] = corpus_bags(cohort, wsi, parts, source, data_root, dx1_only)
    others = np.concatenate([p[1] for p in parts if p[0] != own]) if any(p[0] != own for p in parts) else []
    if len(others) and not any(modalities[m].loc[list(others)].notna().any().any() for m in columns) and not (
            wsi is not None and modalities[wsi].select(others).has_bag().any()):
        raise DataError(f"pretraining corpus '{source}' shares no observed column with task '{task.name}'")
    return Corpus(source, strategy, patient_id, np.concatenate([np.full(len(p[1]), p[0], dtype=object) for p in parts]),
                  modalities, kinds,
                  time=np.concatenate([p[3] for p in parts]) if labelled else None,
                  event=np.concatenate([p[4] for p in parts]) if labelled else None,
                  excluded=excluded)


def corpus_bags(cohort: Cohort, wsi: str, parts: list[tuple], source: str, data_root: Path | None,
                dx1_only: bool) -> Bags:
    """The bags of a pooled corpus's patients (rows in the order of ``parts``).

    Parameters
    ----------
    cohort : Cohort
        The target cohort; its ``wsi`` bags give its own patients' rows.
    wsi : str
        Name of the cohort's wsi modality.
    parts : list of tuple
        ``(code, patient ids, ...)`` per pooled cohort, protected patients already removed.
    source : str
    data_root : Path or None
    dx1_only : bool

    Returns
    -------
    Bags
        n = all patients of ``parts``; no bag (``()``, 0 patches) = no slide
        file. Another TCGA cohort's patient (``pancancer``) reads its slides in
        the folder of the target's bags; in ``pan-cardio`` only the target's
        own patients can have a bag.

    Raises
    ------
    DataError
        A slide file of another cohort exists but cannot be read.
    """
    from benchmark.bags import build_bags

    own = cohort.modalities[wsi]
    patient_id = np.concatenate([p[1] for p in parts]).astype(str)
    bags = own.reindex(patient_id)
    folder = own.folder()
    others = ~np.isin(patient_id, own.patient_id)
    if source == "pancancer" and folder is not None and others.any():
        pool = pancancer_pool(str(data_root))
        slide_ids = np.concatenate([pool[code]["slide_ids"].reindex(ids).fillna("").astype(str).to_numpy()
                                    if "slide_ids" in pool[code] else np.full(len(ids), "", dtype=object)
                                    for code, ids, *_ in parts])
        built = build_bags(patient_id[others], slide_ids[others], folder, dx1_only, require_any=False)
        bags = Bags.concat([bags.take(np.flatnonzero(~others)), built]).select(patient_id)
    return bags


@functools.lru_cache(maxsize=2)
def aligned_pool(source: str, data_root: str, own: str | None,
                 columns: tuple[tuple[str, tuple[str, ...]], ...]) -> list[tuple]:
    """Every pooled cohort aligned to the target columns, before any patient is removed.

    Returns one ``(code, source patient ids, {modality: DataFrame}, time, event)``
    per pooled cohort (see :func:`align_columns`). Cached per process for the
    last two (source, target) pairs: aligning 15,528 GEO genes across 14 TCGA
    cohorts takes tens of seconds, and an ablation builds a corpus for every
    fold of every cell. Callers filter rows; they never modify the frames.
    """
    pool = pancancer_pool(data_root) if source == "pancancer" else cardio_pool()
    out = []
    for code, raw in pool.items():
        frames = {m: align_columns(raw, list(cols), code, source, own) for m, cols in columns}
        out.append((code, raw.index.astype(str).to_numpy(), frames, raw["time"].to_numpy(np.float64),
                    raw["event"].to_numpy(np.int8)))
    return out


def _require_root(data_root: Path | None) -> Path:
    if data_root is None or not (Path(data_root) / "omics").is_dir():
        raise DataError("pretrain_corpus 'pancancer' reads <data-root>/omics/tcga_<cohort>_all_clean.csv.zip: "
                        "pass --data-root DIR or set MMBENCH_DATA")
    return Path(data_root)


def _symbol_key(column: str) -> str:
    """Pool column holding a target column: expression columns by gene symbol (``TP53_rnaseq``)."""
    from benchmark.nn.encoders import gene_symbol

    if column.endswith("_rnaseq") or column.startswith("num_HS_"):
        return gene_symbol(column) + "_rnaseq"
    return column


def align_columns(raw: pd.DataFrame, columns: list[str], code: str, source: str, own: str | None) -> pd.DataFrame:
    """Values of the target ``columns`` for one pooled cohort's patients (``raw``: one row per patient).

    Returns a float64 DataFrame (len(raw), len(columns)) with NaN where the
    cohort does not observe the column (see the module docstring for the rules).
    """
    out = {}
    for col in columns:
        if "=" in col and is_missing_marker(col.split("=", 1)[1]):
            values = np.full(len(raw), np.nan)  # a missing marker is never a category (benchmark.integrity)
        elif source == "pan-cardio" and code != own:
            values = _cardio_value(raw, col, code, own)
        else:
            values = _pooled_value(raw, col)
        out[col] = values
    return pd.DataFrame(out, index=raw.index, dtype=np.float64)


def _pooled_value(raw: pd.DataFrame, col: str) -> np.ndarray:
    key = _symbol_key(col)
    if key in raw.columns:
        return pd.to_numeric(raw[key], errors="coerce").to_numpy(np.float64)
    if col in raw.columns:
        return pd.to_numeric(raw[col], errors="coerce").to_numpy(np.float64)
    if "=" in col:
        field_name, level = col.split("=", 1)
        if field_name in raw.columns:
            values = missing_as_nan(raw[field_name])  # the loader's rule: a missing marker is NaN, never a level
            return np.where(values.isna(), np.nan, (values.astype(str) == level).astype(np.float64))
    return np.full(len(raw), np.nan)


def _cardio_value(raw: pd.DataFrame, col: str, code: str, own: str | None) -> np.ndarray:
    """A target cardiovascular column read from another cohort through CARDIO_VARIABLES."""
    nan = np.full(len(raw), np.nan)
    if own is None:  # a non-cardio target: only shared raw names
        return _pooled_value(raw, col)
    field_name, level = (col.split("=", 1) + [None])[:2] if "=" in col else (col, None)
    for variable, entries in CARDIO_VARIABLES.items():
        if own not in entries or code not in entries:
            continue
        target_col, target_code = entries[own]
        if target_col != field_name:
            continue
        value = _cardio_variable(raw, *entries[code])
        if target_code[0] == "num" and level is None:
            return value / target_code[1]
        if target_code[0] == "is" and level is not None:
            if str(target_code[1]) == level:
                return value
            return 1.0 - value  # the other level of a binary field
    return nan


def _cardio_variable(raw: pd.DataFrame, column: str, code: tuple) -> np.ndarray:
    values = raw[column]
    if code[0] == "num":
        return pd.to_numeric(values, errors="coerce").to_numpy(np.float64) * float(code[1])
    values = missing_as_nan(values)  # the loader's rule (benchmark.integrity)
    return np.where(values.isna(), np.nan, (values.astype(str) == str(code[1])).astype(np.float64))


@functools.lru_cache(maxsize=2)
def pancancer_pool(data_root: str) -> dict[str, pd.DataFrame]:
    """Every TCGA cohort file under ``<data_root>/omics``, one row per patient (index ``case_id``, str).

    Each file is read by :func:`benchmark.rawfiles.read_tcga_patients`, the
    task loader's reader: the same checks and the same one-line error. A file
    the loader would refuse (a patient with a missing or negative time, a
    censorship other than 0/1, slides that disagree on a field or filed under
    another patient) stops the corpus too; no row is dropped in silence.

    Returns
    -------
    dict of str to DataFrame
        Cohort code (``brca``, ...) -> the file's clinical and molecular
        columns plus ``time`` (float64, ``survival_months``), ``event`` (int8,
        ``1 - censorship``) and ``slide_ids`` (the patient's slide ids, sorted,
        ``'|'``-joined), in the loader's patient order. Cached per data root
        within a process (loading the 14 files takes ~30 s on 2 cores).

    Raises
    ------
    DataError
        No cohort file, or a file the task loader would refuse (names file, field and patient).
    """
    pool = {}
    for path in sorted(Path(data_root, "omics").glob("tcga_*_all_clean.csv.zip")):
        code = re.sub(r"^tcga_|_all_clean\.csv\.zip$", "", path.name)
        patients = read_tcga_patients(path)
        pool[code] = patients.drop(columns=["case_id", "patient_id"]).set_index(
            pd.Index(patients["patient_id"].to_numpy(), name="case_id"))
    if not pool:
        raise DataError(f"no tcga_<cohort>_all_clean.csv.zip under {data_root}/omics")
    return pool


@functools.lru_cache(maxsize=1)
def cardio_pool() -> dict[str, pd.DataFrame]:
    """The five cardiovascular SurvSet cohorts, one row per patient (index ``pid``, str), with ``time``/``event``.

    Each dataset is read by :func:`benchmark.rawfiles.read_survset`, the task
    loader's reader (same ids, same label checks).
    """
    pool = {}
    for name in CARDIO_DATASETS:
        frame = read_survset(name)
        pool[name] = frame.set_index(pd.Index(frame.pop("patient_id").to_numpy(), name="pid"))
    return pool
