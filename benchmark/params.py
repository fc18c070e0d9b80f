"""Typed method params: declared once in ``method.toml``, checked before anything is written.

A method declares its params in two tables of its manifest::

    [params]                 # name = default; the TOML type of the default is the param's type
    lr = 2e-4
    hidden = [128, 64]
    monitor = "loss"

    [param_rules]            # optional: allowed values, and params without a default
    lr = { min = 0 }
    monitor = { choices = ["loss", "cindex"] }
    max_features = { type = "str|int|float" }           # a union overrides the inferred type
    pretrain_bag_patches = { type = "int", min = 0 }    # no default: the method's own applies

Types: ``int``, ``float`` (an int is accepted), ``bool``, ``str``,
``list[int]``, ``list[float]``, ``list[str]`` and unions ``a|b``. Values given
as strings on the command line (``--param hidden=32,16``,
``--param prefetch=false``) are accepted when they convert; the value itself
is passed on unchanged (the run id hashes what the user gave). Every method
also accepts ``modalities`` (names or kinds, a list or ``a,b``), which the
runner consumes.

:func:`check_params` is what ``mmbench run``, ``grid``, ``ablate`` and
``validate`` call (through :func:`benchmark.plan.build_plan`); it raises one
:class:`~benchmark.errors.MethodError` line naming the manifest.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.errors import MethodError

__all__ = ["ParamSpec", "RUNNER_PARAMS", "declared_params", "check_params", "check_value", "coerce_value",
           "describe_params"]

SCALAR_TYPES = ("int", "float", "bool", "str")
LIST_TYPES = tuple(f"list[{t}]" for t in ("int", "float", "str"))
RULE_KEYS = ("type", "choices", "min", "max", "help")
RUNNER_PARAMS = ("modalities",)
"""Params every method accepts; the runner consumes them (``modalities``: names or kinds the method receives)."""
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class ParamSpec:
    """One declared param.

    Attributes
    ----------
    name : str
    type : str
        ``int``, ``float``, ``bool``, ``str``, ``list[int|float|str]`` or a union ``a|b`` of those.
    default : object or None
        The ``[params]`` value; None when only ``[param_rules]`` declares it (the method's own default applies).
    choices : tuple
        Allowed values (empty: any value of the type).
    min, max : float or None
        Inclusive bounds of a number (of every element of a list).
    help : str
    """

    name: str
    type: str
    default: Any = None
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    help: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``mmbench validate``, run.json)."""
        out = {"name": self.name, "type": self.type, "default": self.default}
        if self.choices:
            out["choices"] = list(self.choices)
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        return out


def type_of(value: Any) -> str:
    """The param type of a TOML default: ``bool``, ``int``, ``float``, ``str`` or ``list[...]``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        kinds = {type_of(v) for v in value}
        if kinds <= {"int"} and kinds:
            return "list[int]"
        if kinds <= {"int", "float"} and kinds:
            return "list[float]"
        return "list[str]"
    return "str"


def declared_params(params: dict[str, Any], rules: dict[str, Any], manifest: str | Path) -> dict[str, ParamSpec]:
    """The declared params of a manifest's ``[params]`` and ``[param_rules]`` tables.

    Raises
    ------
    MethodError
        A rule that is not a table, has an unknown key or type, a rule-only
        param without a ``type``, or a default that breaks its own rule.
    """
    if not isinstance(rules, dict):
        raise MethodError(f"{manifest}: [param_rules] must be a table")
    declared: dict[str, ParamSpec] = {}
    for name in [*params, *(n for n in rules if n not in params)]:
        rule = rules.get(name, {})
        if not isinstance(rule, dict):
            raise MethodError(f"{manifest}: param_rules.{name} must be a table like {{ min = 0 }}")
        unknown = [k for k in rule if k not in RULE_KEYS]
        if unknown:
            raise MethodError(f"{manifest}: param_rules.{name} has unknown key '{unknown[0]}' "
                              f"(known: {', '.join(RULE_KEYS)})")
        if name not in params and "type" not in rule:
            raise MethodError(f"{manifest}: param_rules.{name} declares a param without a default: give its type")
        ptype = str(rule.get("type", type_of(params.get(name))))
        for part in ptype.split("|"):
            if part not in SCALAR_TYPES + LIST_TYPES:
                raise MethodError(f"{manifest}: param '{name}' has unknown type '{part}' "
                                  f"(known: {', '.join(SCALAR_TYPES + LIST_TYPES)})")
        spec = ParamSpec(name, ptype, params.get(name), tuple(rule.get("choices", ())), rule.get("min"),
                         rule.get("max"), str(rule.get("help", "")))
        if name in params:
            problem = check_value(spec, params[name])
            if problem:
                raise MethodError(f"{manifest}: default of param '{name}': {problem}")
        declared[name] = spec
    if any(n in declared for n in RUNNER_PARAMS):
        raise MethodError(f"{manifest}: '{RUNNER_PARAMS[0]}' is a runner param; do not declare it")
    return declared


def _convert(ptype: str, value: Any) -> Any:
    """``value`` as ``ptype`` (strings from the command line converted); ValueError when it is not one."""
    if ptype.startswith("list["):
        inner = ptype[5:-1]
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return [_convert(inner, v) for v in items]
    if ptype == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError
    if ptype == "int":
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
        return int(value)
    if ptype == "float":
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if not isinstance(value, str):
        raise ValueError
    return value


def check_value(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``spec`` (one phrase), or None when it is."""
    converted = None
    for part in spec.type.split("|"):
        try:
            converted = _convert(part, value)
            break
        except (TypeError, ValueError):
            continue
    else:
        return f"expected {spec.type}, got {value!r}"
    if spec.choices and converted not in spec.choices:
        return f"must be one of {', '.join(map(str, spec.choices))}, got {value!r}"
    numbers = converted if isinstance(converted, list) else [converted]
    for number in numbers:
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            if spec.min is not None and number < spec.min:
                return f"must be >= {spec.min}, got {value!r}"
            if spec.max is not None and number > spec.max:
                return f"must be <= {spec.max}, got {value!r}"
    return None


def coerce_value(spec: ParamSpec, value: Any) -> Any:
    """``value`` in the declared type where it came as text or as a single item of a list param.

    ``--param alphas=1.0,2.0`` reaches the method as ``[1.0, 2.0]`` and
    ``--param alphas=1`` as ``[1.0]`` (``alphas`` is a list param). A value
    already of an accepted type (TOML-typed, e.g. ``lr=1e-3``) is passed as
    given, so that a run's id, which hashes its params, does not change.
    Call after :func:`check_value` has accepted ``value``.
    """
    for part in spec.type.split("|"):
        try:
            converted = _convert(part, value)
        except (TypeError, ValueError):
            continue
        text_items = isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value)
        if part != "str" and part != "list[str]" and (isinstance(value, str) or text_items):
            return converted  # text from the command line
        if part.startswith("list[") and not isinstance(value, (list, tuple)):
            return converted  # one item given for a list param
        return value
    return value


def check_params(declared: dict[str, ParamSpec], given: dict[str, Any], method: str,
                 manifest: str | Path) -> dict[str, Any]:
    """Refuse unknown or ill-typed params (the overrides of ``--param`` and grid/ablation files).

    Raises
    ------
    MethodError
        One line: the first unknown param (with the closest declared names)
        or the first value that breaks its declaration.

    Returns
    -------
    dict
        ``given`` with each value in its declared type (:func:`coerce_value`):
        what the method receives.
    """
    checked = {}
    for name, value in given.items():
        if name in RUNNER_PARAMS:
            if not isinstance(value, (str, list)) or not value:
                raise MethodError(f"param 'modalities' must be names or kinds like rna,clinical, got {value!r}")
            checked[name] = value
            continue
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise MethodError(f"method '{method}' has no param '{name}'{hint}; its params are declared in {manifest}")
        problem = check_value(declared[name], value)
        if problem:
            raise MethodError(f"method '{method}': param '{name}' {problem} (declared in {manifest})")
        checked[name] = coerce_value(declared[name], value)
    return checked


def describe_params(declared: dict[str, ParamSpec]) -> list[str]:
    """One line per param: ``name: type = default [choices / range]`` (``mmbench validate``)."""
    lines = []
    for spec in declared.values():
        extra = []
        if spec.choices:
            extra.append("one of " + ", ".join(map(str, spec.choices)))
        if spec.min is not None or spec.max is not None:
            extra.append(f"in [{'' if spec.min is None else spec.min}, {'' if spec.max is None else spec.max}]")
        default = "(method default)" if spec.default is None else repr(spec.default)
        lines.append(f"{spec.name}: {spec.type} = {default}" + (f"  [{'; '.join(extra)}]" if extra else ""))
    return lines
