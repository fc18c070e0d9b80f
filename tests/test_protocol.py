"""The stated training protocol (benchmark/protocol.py, README "Training protocol") matches the baselines' defaults."""

from pathlib import Path

import pytest

from benchmark.method import load_spec
from benchmark.protocol import DELTA_C_REFERENCE, PROTOCOL_NOTES

BASELINES = Path(__file__).resolve().parents[1] / "baselines"
README = Path(__file__).resolve().parents[1] / "README.md"
TABULAR_DEEP = ["snn", "early-fusion", "late-fusion", "crossattn", "deephit", "logistic-hazard"]
MIL = ["abmil", "transmil", "porpoise", "survpath"]


@pytest.mark.parametrize("name", TABULAR_DEEP + MIL)
def test_every_deep_baseline_selects_its_epoch_on_val_harrell_c_with_the_stated_patience(name):
    params = load_spec(BASELINES / name).params
    patience, epochs = (10, 20) if name in MIL else (20, 100)
    assert (params["monitor"], int(params["patience"]), int(params["epochs"])) == ("cindex", patience, epochs)


def test_classical_selection_grids_are_the_stated_ones():
    assert len(load_spec(BASELINES / "coxph").params["alphas"]) == 5
    assert int(load_spec(BASELINES / "coxnet").params["n_alphas"]) == 50
    assert "among 5 values" in PROTOCOL_NOTES and "among the 50" in PROTOCOL_NOTES
    assert "patience 10, at most 20 epochs" in PROTOCOL_NOTES and "20 epochs without improvement (at most 100" in PROTOCOL_NOTES


def test_the_reference_is_declared_and_the_readme_states_the_protocol():
    assert DELTA_C_REFERENCE == "coxph" and (BASELINES / DELTA_C_REFERENCE / "method.toml").is_file()
    readme = README.read_text()
    assert "## Training protocol" in readme and PROTOCOL_NOTES.strip() in readme
