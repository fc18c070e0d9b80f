"""``mmbench audit``: every input check of a task's data, without training, as one table of findings.

The checks are those of :mod:`benchmark.integrity` (run here over a whole
cohort instead of stopping at the first problem), of ``mmbench tasks verify``
(split hashes and split rules) and a summary of the labels:

=========  ====================================================================
check      what
=========  ====================================================================
load       the cohort loads (every check at the door of :func:`load_cohort`)
labels     rows of one patient that disagree on time or censorship, in the
           cohort file and in the endpoint file (DSS/PFI)
slides     slide ids that name another patient than the one they are filed under
bags       slide files that are unreadable, inconsistent (coords vs features),
           non-finite, or empty; patients whose every bag is empty; patients
           without any slide file; one feature width across the cohort
splits     split hash, unknown / repeated / two-role patients, too few events
events     event rate and follow-up; a hint when they look like a flipped
           censorship column (most patients "events", and the "events" followed
           longer than the "censored")
features   width and missing share of each modality
=========  ====================================================================

A finding is an ``error`` (the task cannot be run as it is: ``mmbench run``
refuses it), a ``warning`` (worth a look: results may be wrong) or ``info``
(the summary). Exit status of the command: 0 without errors or warnings, 1
with any, 2 when an input cannot be read at all (missing data root or file,
unreadable table; reported as one ``mmbench: error:`` line).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.cohort import Cohort
from benchmark.errors import DataError, MMBenchError
from benchmark.task import TaskSpec

SEVERITIES = ("error", "warning", "info")
FLIPPED_EVENT_RATE = 0.5
FLIPPED_FOLLOW_UP_RATIO = 1.5
"""Above this event rate, with the events' median follow-up above this multiple of the censored patients', the
censorship column looks flipped (events usually come before the end of follow-up, censorings at it)."""


@dataclass(frozen=True)
class Finding:
    """One line of the audit table.

    Attributes
    ----------
    severity : {"error", "warning", "info"}
    check : str
        ``load``, ``labels``, ``slides``, ``bags``, ``splits``, ``events``, ``features``.
    where : str
        The file, folder or split set concerned.
    detail : str
        One line naming the patient and the field where there is one.
    """

    severity: str
    check: str
    where: str
    detail: str


@dataclass
class AuditReport:
    """All findings of one task."""

    task: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: str, check: str, where, detail: str) -> None:
        self.findings.append(Finding(severity, check, str(where), detail))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def exit_code(self) -> int:
        """0 clean (info only), 1 with an error or a warning, 2 when an input could not be read (check ``load``)."""
        if any(f.check == "load" for f in self.findings):
            return 2
        return 1 if any(f.severity != "info" for f in self.findings) else 0

    def table(self) -> str:
        """The findings as a plain-text table (errors first)."""
        from tabulate import tabulate

        rows = sorted(self.findings, key=lambda f: SEVERITIES.index(f.severity))
        return tabulate([[f.severity, f.check, f.where, f.detail] for f in rows],
                        headers=["severity", "check", "where", "finding"], maxcolwidths=[None, None, 60, 100])


def audit_task(task: TaskSpec, data_root: str | Path | None = None, features: str | None = None,
               labels_root: str | Path | None = None, max_listed: int = 5) -> AuditReport:
    """Run every input check on a task's data without training.

    Parameters
    ----------
    task : TaskSpec
    data_root : path, optional
        TCGA data root (else ``$MMBENCH_DATA``).
    features : str, optional
        Encoder folder of the patch features (``<data-root>/features/<encoder>``).
    labels_root : path, optional
        Labels root of a private cohort.
    max_listed : int
        Findings of one kind listed one by one before they are summarised.

    Returns
    -------
    AuditReport

    Raises
    ------
    DataError
        An input that cannot be read at all (no data root, missing or
        unreadable cohort file): the command's exit status 2.
    """
    from benchmark.loaders import load_cohort, resolve_data_root

    report = AuditReport(task.name)
    root = resolve_data_root(data_root)
    slides = None
    if task.source == "tcga":
        slides = _audit_tcga_files(task, root, report, max_listed)
    cohort = None
    try:
        cohort = load_cohort(task, root, labels_root, features=features)
    except DataError as exc:
        if not report.errors:  # a problem the file checks above did not already name
            report.add("error", "load", task.path.name, str(exc))
        try:  # the bags are audited one by one below: audit the rest without them
            tabular = replace(task, modalities={k: m for k, m in task.modalities.items() if m.kind != "wsi"})
            cohort = load_cohort(tabular, root, labels_root)
        except DataError:
            cohort = None
    if task.source == "tcga" and root is not None and slides is not None:
        _audit_bags(task, root, features, slides, report, max_listed)
    if cohort is not None:
        _audit_splits(task, root, cohort, report)
        _audit_events(task, cohort, report)
        _audit_features(cohort, report)
    return report


def preflight_errors(report: AuditReport, limit: int = 3) -> str | None:
    """The first ``limit`` errors of a report as one line (None without errors), for ``mmbench run``."""
    errors = report.errors
    if not errors:
        return None
    listed = "; ".join(f"{e.where}: {e.detail}" for e in errors[:limit])
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return f"task '{report.task}' has {len(errors)} data error(s): {listed}{more}; `mmbench audit --task {report.task}` lists them all"


# --------------------------------------------------------------------------- TCGA files


def _audit_tcga_files(task: TaskSpec, root: Path | None, report: AuditReport, max_listed: int) -> pd.DataFrame:
    """Label-row conflicts and slide owners of the cohort and endpoint files; returns the slide table."""
    from benchmark.integrity import label_conflicts, read_table, slide_owner_problems
    from benchmark.loaders import TCGA_ENDPOINT_COLUMNS, require_data_root
    from benchmark.rawfiles import read_tcga_slides

    omics = require_data_root(task, root, f"omics/tcga_{task.dataset}_all_clean.csv.zip")
    slides = read_tcga_slides(omics)  # the loader's reader; the audit lists every problem instead of the first
    for col in ("case_id", "slide_id"):
        if col not in slides.columns:
            raise DataError(f"{omics}: field '{col}' is missing")
    label_files = [(omics, slides, ["survival_months", "censorship"])]
    if task.endpoint in TCGA_ENDPOINT_COLUMNS and task.endpoint != "OS":
        meta_path = require_data_root(task, root, f"survpath/metadata/tcga_{task.dataset}.csv")
        t_col, c_col = TCGA_ENDPOINT_COLUMNS[task.endpoint]
        label_files.append((meta_path, read_table(meta_path), [t_col, c_col]))
    for path, frame, columns in label_files:
        if "case_id" not in frame.columns:
            raise DataError(f"{path}: field 'case_id' is missing")
        found = label_conflicts(frame, "case_id", columns)
        for patient, column in found[:max_listed]:
            values = frame.loc[frame["case_id"] == patient, column].tolist()
            report.add("error", "labels", path.name, f"patient '{patient}' has rows that disagree on field "
                                                       f"'{column}': {values}")
        if len(found) > max_listed:
            report.add("error", "labels", path.name, f"... {len(found) - max_listed} more conflicting (patient, field) pairs")
    rule = str(task.extra.get("slide_id_rule", "tcga-barcode"))
    bad = slide_owner_problems(slides["case_id"], slides["slide_id"], rule)
    for case, slide in bad[:max_listed]:
        report.add("error", "slides", omics.name, f"slide '{slide}' is filed under patient '{case}' but its id "
                                                  f"names another patient")
    if len(bad) > max_listed:
        report.add("error", "slides", omics.name, f"... {len(bad) - max_listed} more slides filed under another patient")
    return slides


def _audit_bags(task: TaskSpec, root: Path, features: str | None, slides: pd.DataFrame, report: AuditReport,
                max_listed: int) -> None:
    """Every slide file of the cohort inspected (not only the first problem)."""
    from benchmark.bags import features_dir, slide_stem
    from benchmark.integrity import inspect_bag_file

    try:
        folder = features_dir(root, features)
    except DataError as exc:
        report.add("error", "bags", root / "features", str(exc))
        return
    if folder is None:
        if any(m.kind == "wsi" for m in task.modalities.values()):
            report.add("info", "bags", root / "features", "no patch features prepared: the wsi modality is left out")
        return
    present = {p.stem: p for p in folder.glob("*.h5")}
    by_patient: dict[str, list] = {}
    for case, slide in zip(slides["case_id"].astype(str), slides["slide_id"].astype(str)):
        stem = slide_stem(slide)
        by_patient.setdefault(case, [])
        if stem in present:
            by_patient[case].append(inspect_bag_file(present[stem]))
    bags = [b for files in by_patient.values() for b in files]
    broken = [b for b in bags if b.problem]
    for bag in broken[:max_listed]:
        report.add("error", "bags", bag.path.name, bag.problem.split(": ", 1)[-1])
    if len(broken) > max_listed:
        report.add("error", "bags", folder, f"... {len(broken) - max_listed} more unusable slide files")
    empty = [b for b in bags if b.empty]
    if empty:
        report.add("warning", "bags", folder, f"{len(empty)} slide file(s) hold no patch (left out as missing "
                                              f"slides), e.g. {empty[0].path.name}")
    all_empty = sorted(p for p, files in by_patient.items() if files and all(b.empty for b in files))
    if all_empty:
        report.add("warning", "bags", folder, f"{len(all_empty)} patient(s) have only empty bags (no slide for "
                                              f"them), e.g. '{all_empty[0]}'")
    none = sorted(p for p, files in by_patient.items() if not files)
    if none:
        report.add("info", "bags", folder, f"{len(none)} of {len(by_patient)} patients have no slide file "
                                           f"(missing wsi), e.g. '{none[0]}'")
    widths = sorted({b.width for b in bags if b.width is not None and b.n_patches > 0})
    if len(widths) > 1:
        report.add("error", "bags", folder, f"patch features of several widths {widths}: features of two encoders mixed?")
    elif widths:
        n = [b.n_patches for b in bags if not b.problem]
        report.add("info", "bags", folder, f"{len(bags)} slide files, width {widths[0]}, patches per slide "
                                           f"median {int(np.median(n))} (min {min(n)}, max {max(n)})")


# --------------------------------------------------------------------------- splits, events, features


def _audit_splits(task: TaskSpec, root: Path | None, cohort: Cohort, report: AuditReport) -> None:
    from benchmark.splits import load_split_set, verify_split_set

    for name, spec in task.splits.items():
        where = f"split set '{name}'"
        try:
            split = load_split_set(task, name, root)
        except DataError as exc:
            if spec.path and (root is None or "not found" in str(exc)):
                report.add("info", "splits", where, f"published family not available: {exc}")
            else:
                report.add("error", "splits", where, str(exc))
            continue
        except MMBenchError as exc:  # hash mismatch
            report.add("error", "splits", where, str(exc))
            continue
        problems = verify_split_set(split, cohort.patient_id, cohort.event, note=spec.min_events_note)
        for problem in problems:
            report.add("error", "splits", where, problem)
        if not problems:
            report.add("info", "splits", where, f"{len(split.folds)} folds, sha256 matches, every split rule holds"
                                                + (" (val = test fold)" if split.val_is_test else ""))


def _audit_events(task: TaskSpec, cohort: Cohort, report: AuditReport) -> None:
    time, event = cohort.time, cohort.event.astype(bool)
    rate = float(event.mean()) if cohort.n else 0.0
    med_event = float(np.median(time[event])) if event.any() else float("nan")
    med_cens = float(np.median(time[~event])) if (~event).any() else float("nan")
    report.add("info", "events", task.path.name,
               f"{cohort.n} patients, {int(event.sum())} events ({rate:.0%}); follow-up median {np.median(time):.3g} "
               f"(events {'none' if np.isnan(med_event) else f'{med_event:.3g}'}, "
               f"censored {'none' if np.isnan(med_cens) else f'{med_cens:.3g}'}), max {time.max():.3g} {task.time_unit}")
    if rate > FLIPPED_EVENT_RATE and med_event > FLIPPED_FOLLOW_UP_RATIO * med_cens:
        report.add("warning", "events", task.path.name,
                   f"{rate:.0%} events, and the events were followed longer (median {med_event:.3g}) than the "
                   f"censored ({med_cens:.3g}): does the file's censorship column mean the opposite "
                   "(mmbench reads censorship 1 = censored, event = 1 - censorship)?")
    if rate == 0:
        report.add("error", "events", task.path.name, "no patient has an event: every metric is undefined")


def _audit_features(cohort: Cohort, report: AuditReport) -> None:
    for name, frame in cohort.modalities.items():
        if cohort.kinds[name] == "wsi":
            have = int(frame.has_bag().sum())
            report.add("info", "features", name, f"wsi bags for {have} of {cohort.n} patients")
            continue
        values = frame.to_numpy(dtype=np.float64)
        missing = float(np.isnan(values).mean()) if values.size else 0.0
        report.add("info", "features", name, f"{frame.shape[1]} columns, {missing:.1%} missing values")
        share = frame.isna().mean().sort_values(ascending=False)
        mostly = share[share > 0.5]
        if len(mostly):
            listed = ", ".join(f"{c} ({v:.0%})" for c, v in list(mostly.items())[:5])
            report.add("info", "features", name, f"{len(mostly)} column(s) missing for most patients: {listed}")
        if values.size and np.isinf(values).any():
            report.add("error", "features", name, f"{int(np.isinf(values).sum())} infinite values")
