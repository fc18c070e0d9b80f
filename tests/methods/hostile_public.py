"""A HOSTILE test submission (integrity kind 6): it tries to read the labels of tasks whose data ship inside
installed packages, by every way those packages offer, then raises ``RuntimeError("REPORT <json>")`` (the
runner's failed record is the only way out of the worker; the test reads it).

Ways tried: SurvSet's loader (``SurvLoader().load_dataset("TRACE")``), scikit-survival's loader
(``sksurv.datasets.load_whas500()``), and opening the package data files directly (every file under
``SurvSet/resources`` and ``sksurv/datasets/data``). Each way reports how many labelled rows it got.
"""

import json
import os
from pathlib import Path


def _try(fn):
    try:
        return fn()
    except Exception as exc:  # what the sandbox makes of it
        return f"refused: {type(exc).__name__}"


class HostilePublic:
    def fit(self, train, val, ctx):
        import SurvSet
        import sksurv.datasets

        report = {}

        def survset():
            from SurvSet.data import SurvLoader

            return int(len(SurvLoader().load_dataset("TRACE")["df"]))

        def whas500():
            _, y = sksurv.datasets.load_whas500()
            return int(len(y))

        report["survset_loader"] = _try(survset)
        report["sksurv_loader"] = _try(whas500)
        readable = []
        for folder in (Path(SurvSet.__file__).parent / "resources", Path(sksurv.datasets.__file__).parent / "data"):
            for root, _, files in os.walk(folder):
                for name in files:
                    try:
                        with open(Path(root) / name, "rb") as handle:
                            if handle.read(64):
                                readable.append(name)
                    except OSError:
                        pass
            report[f"listed_{folder.name}"] = _try(lambda: len(os.listdir(folder)))
        report["readable_files"] = readable
        raise RuntimeError("REPORT " + json.dumps(report))

    def predict(self, data, ctx):
        raise RuntimeError("unreachable")
