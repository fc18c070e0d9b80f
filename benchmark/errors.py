"""Exceptions that the CLI reports as one clear line and a non-zero exit."""


class MMBenchError(Exception):
    """Base class: a problem with the user's input, data, task or method."""


class DataError(MMBenchError):
    """Bad or missing data: a file, a field or a patient is wrong."""


class InputCheckError(DataError):
    """An input file failed a check at the door (:mod:`benchmark.integrity`): ``mmbench audit`` lists them all."""


class TaskError(MMBenchError):
    """Unknown or malformed task, or a split file that does not match its pinned hash."""


class MethodError(MMBenchError):
    """Unknown or malformed method folder, or a method that broke its contract."""


class LabelAccessError(MMBenchError):
    """Code asked an unlabelled cohort view for survival labels."""


class UndefinedMetricError(MMBenchError, ValueError):
    """A metric has no value on this input (e.g. no comparable pairs)."""
