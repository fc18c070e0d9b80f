"""The method interface: a folder with ``method.toml`` and code, loaded by path.

``method.toml`` fields::

    name = "coxph"                      # short name shown on the leaderboard
    description = "Penalised Cox ..."   # one line
    entry = "method.py:CoxPH"           # file inside the folder : class name
    modalities = ["clinical"]           # modality kinds the method needs
    paper = "Cox (1972) ..."            # paper or URL
    optional_modalities = ["wsi"]       # kinds used when the task has them (optional)
    missing_modalities = "drop"         # patients without slides: "drop" from train/val or "impute"
    reference = true                    # baselines only: a classical Δ C reference on the leaderboard
    [params]                            # defaults, overridable by --param k=v; their TOML types are the params' types
    alpha = 0.1
    [param_rules]                       # allowed values and default-less params (benchmark.params)
    alpha = { min = 0 }

``modalities`` lists modality *kinds* (``clinical``, ``rna``, ``cnv``,
``mut``, ``wsi``); the runner gives the method every task modality of those
kinds and fails before training when a kind is absent. ``"*"`` means every
tabular modality of the task.

The class is built as ``Class(**params)`` and must provide::

    fit(train: Cohort, val: Cohort, ctx: Context) -> None
    predict(data: Cohort, ctx: Context) -> Prediction   # data holds no labels
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from benchmark.errors import MethodError
from benchmark.params import ParamSpec, declared_params

__all__ = ["TABULAR_KINDS", "MANIFEST_FIELDS", "Context", "Prediction", "MethodSpec", "load_spec", "load_class", "resolve_modalities",
           "check_prediction", "is_reference_method", "is_reference_record", "Method"]

REPO = Path(__file__).resolve().parents[1]
TABULAR_KINDS = ("clinical", "rna", "cnv", "mut")
MANIFEST_FIELDS = ("name", "description", "entry", "modalities", "paper", "params", "optional_modalities",
                   "missing_modalities", "pretrain_encoders", "pretrain_bag_encoder", "param_rules", "reference")
"""Every field a ``method.toml`` may have (the module docstring says what each means; ``mmbench validate``
names any other as unknown)."""


@dataclass(frozen=True)
class Context:
    """What the runner hands to ``fit`` and ``predict`` besides the data.

    Attributes
    ----------
    seed : int
        Seed for every random number generator the method uses.
    device : str
        ``cpu`` or ``cuda`` (``auto`` is resolved by the runner).
    time_grid : ndarray of float64, shape (T,)
        Times (task unit) at which ``Prediction.survival`` is evaluated.
    horizons : ndarray of float64, shape (H,)
        Evaluation horizons in the task unit.
    scratch_dir : Path
        Private directory for checkpoints and temporary files.
    task : str
        Task name, for logging only.
    progress : callable or None
        ``progress(epoch, n_epochs)`` callback for progress bars.
    """

    seed: int
    device: str
    time_grid: np.ndarray
    horizons: np.ndarray
    scratch_dir: Path
    task: str = ""
    progress: Any = None


@dataclass
class Prediction:
    """Output of ``predict``.

    Attributes
    ----------
    risk : ndarray of float64, shape (n,)
        Higher = shorter expected survival.
    survival : ndarray of float64, shape (n, T), or None
        S(t) at ``Context.time_grid``; ``None`` when the method gives no curves
        (curve-based metrics are then reported as n/a).
    """

    risk: np.ndarray
    survival: np.ndarray | None = None


@runtime_checkable
class Method(Protocol):
    """What a method folder's entry class provides (built as ``Class(**params)``; :func:`load_class` checks it).

    Optional transfer hooks, used when ``pretrain_strategy`` is not ``none``:
    ``pretrain(corpus, ctx)``, ``pretrained_state() -> dict[str, ndarray]`` and
    ``load_pretrained(state, ctx)`` (see :mod:`benchmark.pretrain.stage`).
    """

    def fit(self, train: Any, val: Any, ctx: Context) -> None:
        """Fit on labelled train and val views (:class:`benchmark.cohort.Cohort`)."""

    def predict(self, data: Any, ctx: Context) -> Prediction:
        """Risks (and optionally curves) for an unlabelled view."""


@dataclass(frozen=True)
class MethodSpec:
    """A parsed ``method.toml``; ``path`` is the method folder."""

    name: str
    description: str
    entry: str
    modalities: tuple[str, ...]
    paper: str
    params: dict[str, Any]
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def code_hash(self) -> str:
        """sha256 over every file in the folder (sorted by relative path), hex."""
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(file.relative_to(self.path)).encode())
            digest.update(file.read_bytes())
        return digest.hexdigest()

    def declared_params(self) -> dict[str, ParamSpec]:
        """The typed params of ``[params]`` and ``[param_rules]`` (:func:`benchmark.params.declared_params`)."""
        return declared_params(self.params, self.extra.get("param_rules", {}), self.path / "method.toml")


def is_reference_method(spec: MethodSpec) -> bool:
    """Whether a method is a classical Δ C reference: a folder under ``baselines/`` whose manifest says
    ``reference = true``. Never decided by name: a submission called ``coxph`` is not a reference."""
    return bool(spec.extra.get("reference", False) is True and spec.path.is_relative_to(REPO / "baselines"))


def is_reference_record(record: dict[str, Any]) -> bool:
    """Whether a run.json is a run of a classical Δ C reference.

    Its ``method.reference`` (written by the runner from the manifest) decides.
    A record written before that field existed counts when it is a baseline
    run (``method_kind``) whose folder under ``baselines/`` declares
    ``reference = true`` today; a submission never does, whatever its name.
    """
    method = record.get("method") or {}
    if "reference" in method:
        return method["reference"] is True
    if record.get("method_kind") != "baseline":
        return False
    folder = REPO / "baselines" / Path(str(method.get("path", ""))).name
    try:
        return is_reference_method(load_spec(folder))
    except MethodError:
        return False


def did_you_mean_method(folder: Path) -> str:
    """``"; did you mean baselines/coxph?"`` for a method folder that does not exist ("" when nothing is close).

    Candidates: the method folders next to the one asked for, and those in ``baselines/`` and ``submissions/``.
    """
    import difflib

    repo = Path(__file__).resolve().parents[1]
    roots = [folder.parent, repo / "baselines", repo / "submissions"]
    candidates = {}
    for root in roots:
        if root.is_dir():
            for manifest in root.glob("*/method.toml"):
                shown = manifest.parent.relative_to(repo) if manifest.parent.is_relative_to(repo) else manifest.parent
                candidates.setdefault(manifest.parent.name, str(shown))
    close = difflib.get_close_matches(folder.name, list(candidates), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(candidates[c] for c in close)}?" if close else ""


def method_folder(path: str | Path) -> Path:
    """The method folder ``path`` names: as given, else (a relative path) inside the mmbench checkout.

    ``baselines/coxph`` typed in a Slurm job's own folder finds the shipped
    baseline; a folder of that name in the current directory wins.

    Returns
    -------
    Path
        The folder as given when it exists or when neither exists.
    """
    folder = Path(path).expanduser()
    if folder.is_dir() or folder.is_absolute():
        return folder
    shipped = Path(__file__).resolve().parents[1] / folder
    return shipped if (shipped / "method.toml").is_file() else folder


def load_spec(path: str | Path) -> MethodSpec:
    """Read ``<path>/method.toml`` (``path`` resolved by :func:`method_folder`).

    Raises
    ------
    MethodError
        When the folder or manifest is missing, unparsable, or lacks a field.
    """
    folder = method_folder(path)
    manifest = folder / "method.toml"
    if not folder.is_dir():
        raise MethodError(f"method folder '{folder}' does not exist{did_you_mean_method(folder)}")
    if not manifest.is_file():
        raise MethodError(f"'{manifest}' is missing: a method folder needs a method.toml")
    try:
        raw = tomllib.loads(manifest.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MethodError(f"{manifest}: invalid TOML ({exc})") from None
    for key in ("name", "entry", "modalities"):
        if key not in raw:
            raise MethodError(f"{manifest}: field '{key}' is missing")
    if ":" not in raw["entry"]:
        raise MethodError(f"{manifest}: field 'entry' must be 'file.py:Class', got '{raw['entry']}'")
    modalities = raw["modalities"]
    if not isinstance(modalities, list) or not modalities:
        raise MethodError(f"{manifest}: field 'modalities' must be a non-empty list of kinds")
    known = set(TABULAR_KINDS) | {"wsi", "*"}
    for kind in modalities:
        if kind not in known:
            raise MethodError(f"{manifest}: unknown modality kind '{kind}' (known: {', '.join(sorted(known))})")
    rest = {k: v for k, v in raw.items() if k not in MANIFEST_FIELDS[:6]}  # the typed fields of MethodSpec
    spec = MethodSpec(
        name=str(raw["name"]),
        description=str(raw.get("description", "")),
        entry=raw["entry"],
        modalities=tuple(modalities),
        paper=str(raw.get("paper", "")),
        params=dict(raw.get("params", {})),
        path=folder.resolve(),
        extra=rest,
    )
    spec.declared_params()  # a malformed [param_rules] or a default that breaks its rule fails here
    return spec


def load_class(spec: MethodSpec) -> type:
    """Import the entry class of a method folder by file path.

    Raises
    ------
    MethodError
        When the file is missing, fails to import, or lacks the class or its
        ``fit``/``predict`` methods.
    """
    file_name, class_name = spec.entry.split(":", 1)
    file = spec.path / file_name
    if not file.is_file():
        raise MethodError(f"{spec.path / 'method.toml'}: entry file '{file}' does not exist")
    module_name = f"mmbench_method_{hashlib.sha1(str(file).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the method's own import error, reported as one line
        sys.modules.pop(module_name, None)
        raise MethodError(f"{file}: import failed: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise MethodError(f"{file}: class '{class_name}' not found")
    for attr in ("fit", "predict"):
        if not callable(getattr(cls, attr, None)):
            raise MethodError(f"{file}: class '{class_name}' has no '{attr}' method")
    return cls


def resolve_modalities(spec: MethodSpec, kinds: dict[str, str], override: list[str] | None = None) -> list[str]:
    """Task modality names a method receives.

    Parameters
    ----------
    spec : MethodSpec
    kinds : dict of str to str
        The task's modality name -> kind.
    override : list of str, optional
        Modality names or kinds chosen by the user (``--param modalities=rna,clinical``).

    Raises
    ------
    MethodError
        When a needed kind (or an override name) is absent from the task; the
        message lists what the task has. For ``wsi`` it says how to prepare
        patch features.
    """
    have = ", ".join(f"{m} ({k})" for m, k in kinds.items())
    wanted = list(override) if override else list(spec.modalities)
    chosen: list[str] = []
    for item in wanted:
        if item == "*":
            names = [m for m, k in kinds.items() if k in TABULAR_KINDS]
        elif item in kinds:
            names = [item]
        else:
            names = [m for m, k in kinds.items() if k == item]
        if not names:
            hint = ""
            if item == "wsi":
                hint = (" Prepare patch features with `mmbench slides prepare` into"
                        " <data-root>/features/<encoder>/<slide_id>.h5.")
            raise MethodError(f"method '{spec.name}' needs modality '{item}', which the task lacks (task has: {have}).{hint}")
        chosen.extend(n for n in names if n not in chosen)
    return chosen


SURVIVAL_TOL = 1e-6
"""Float-noise tolerance of the survival-curve checks (bounds and monotonicity), absolute."""


def check_prediction(prediction: Any, n: int, n_grid: int, method: str) -> Prediction:
    """Validate what ``predict`` returned.

    Survival curves must lie in [0, 1] and be non-increasing along the grid,
    both up to :data:`SURVIVAL_TOL` (float noise); a curve that rises (e.g.
    ``1 - S(t)`` returned by mistake) is refused like a NaN, never scored.

    Raises
    ------
    MethodError
        Not a Prediction, wrong shape, NaN/inf risk, survival outside [0, 1]
        or rising along the grid.
    """
    if not isinstance(prediction, Prediction):
        raise MethodError(f"method '{method}': predict returned {type(prediction).__name__}, expected Prediction")
    risk = np.asarray(prediction.risk, dtype=np.float64)
    if risk.shape != (n,):
        raise MethodError(f"method '{method}': risk has shape {risk.shape}, expected ({n},)")
    if not np.isfinite(risk).all():
        raise MethodError(f"method '{method}': risk holds {int((~np.isfinite(risk)).sum())} NaN/inf values")
    survival = prediction.survival
    if survival is not None:
        survival = np.asarray(survival, dtype=np.float64)
        if survival.shape != (n, n_grid):
            raise MethodError(f"method '{method}': survival has shape {survival.shape}, expected ({n}, {n_grid})")
        if not np.isfinite(survival).all() or survival.min() < -SURVIVAL_TOL or survival.max() > 1 + SURVIVAL_TOL:
            raise MethodError(f"method '{method}': survival must be finite and within [0, 1]")
        rise = np.diff(survival, axis=1) if n_grid > 1 else np.zeros((n, 0))
        if rise.size and rise.max() > SURVIVAL_TOL:
            patient, point = np.unravel_index(int(np.argmax(rise)), rise.shape)
            raise MethodError(f"method '{method}': survival must be non-increasing along the time grid "
                              f"(patient row {patient} rises by {rise[patient, point]:.3g} at grid point {point + 1}; "
                              f"{int((rise > SURVIVAL_TOL).any(axis=1).sum())} of {n} curves rise)")
        survival = np.clip(survival, 0.0, 1.0)
    return Prediction(risk=risk, survival=survival)
