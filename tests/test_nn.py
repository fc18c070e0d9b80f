"""Tests of benchmark.nn: discrete-time survival, heads and losses, encoders, fusion, the training loop.

Cases C15 and C16 come from /work/shared/cases/metrics.jsonl (public bug
reports); their values are also written here so the tests run without it.
Every other cohort in this file is SYNTHETIC (random numbers with a planted
signal), built for unit tests only.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark.errors import DataError, MethodError
from benchmark.nn.discrete import (
    bin_labels,
    discrete_prediction,
    discrete_targets,
    fit_bins,
    nll_loss,
    risk_from_hazards,
    survival_on_grid,
)
from benchmark.nn.encoders import (
    SNN,
    GroupTokenizer,
    VariableTokenizer,
    gene_families,
    gene_groups,
    gene_symbol,
    widths,
)
from benchmark.nn.fusion import AttentionPool, CoAttention, concat_fusion
from benchmark.nn.heads import HazardHead, cox_loss
from benchmark.nn.pycox_adapter import survival_at_cuts_on_grid
from benchmark.nn.train import TrainConfig, predict, train_model

CASES = Path(__file__).resolve().parents[1].parent / "shared" / "cases" / "metrics.jsonl"
DATA = Path(os.environ.get("MMBENCH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga"))

# Literal copies of cases C15 and C16 (used when ../shared is absent).
C15 = {
    "input": {
        "slides": [
            ("P1", 3.0, 0), ("P1", 3.0, 0), ("P2", 5.0, 1), ("P3", 7.0, 0), ("P4", 10.0, 0), ("P4", 10.0, 0),
            ("P5", 12.0, 1), ("P6", 15.0, 0), ("P7", 20.0, 0), ("P8", 24.0, 1), ("P9", 30.0, 0),
        ],
        "n_bins": 4,
        "eps": 1e-6,
    },
    "expected": {
        "edges": [2.999999, 7.75, 12.5, 18.75, 30.000001],
        "disc_label_by_patient": {"P1": 0, "P2": 0, "P3": 0, "P4": 1, "P5": 1, "P6": 2, "P7": 3, "P8": 3, "P9": 3},
        "class_label_2bin_plus_c": {"P1": 0, "P2": 1, "P3": 0, "P4": 2, "P5": 3, "P6": 4, "P7": 6, "P8": 7, "P9": 6},
        "wrong_edges_all_patients": [3.0, 7.0, 12.0, 20.0, 30.0],
        "wrong_edges_slide_level": [3.0, 6.0, 10.0, 16.25, 30.0],
    },
}
C16 = {
    "input": {
        "hazards": [[0.1, 0.2, 0.3, 0.4], [0.2, 0.1, 0.5, 0.6], [0.05, 0.1, 0.1, 0.2]],
        "bin_label_Y": [2, 1, 3],
        "censorship_c": [0, 1, 1],
        "alphas": [0.0, 0.15, 0.4],
    },
    "expected": {
        "alpha_0": 0.7820462718,
        "alpha_0.15": 0.7413631746,
        "alpha_0.4": 0.6735580126,
        "wrong_prefix_patho_bench_alpha_0": 0.5108256238,
        "wrong_censorship_used_as_event_alpha_0": 1.6941199645,
    },
}


def _case(case_id: str, literal: dict) -> dict:
    """The case from the shared jsonl when present, else the literal copy (slides as tuples)."""
    if CASES.is_file():
        for line in CASES.read_text().splitlines():
            case = json.loads(line)
            if case["id"] == case_id:
                if case_id == "C15":
                    case["input"]["slides"] = [
                        (s["case_id"], s["survival_months"], s["censorship"]) for s in case["input"]["slides"]
                    ]
                return case
    return literal


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small networks: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- discrete time (C15, C16)


def test_c15_bins_from_uncensored_patients_not_slides():
    case = _case("C15", C15)
    slides = pd.DataFrame(case["input"]["slides"], columns=["case_id", "time", "censorship"])
    patients = slides.drop_duplicates("case_id").set_index("case_id")
    event = 1 - patients["censorship"].to_numpy()  # the one conversion at the boundary
    edges = fit_bins(patients["time"].to_numpy(), event, case["input"]["n_bins"], eps=case["input"]["eps"])
    expected = case["expected"]
    np.testing.assert_allclose(edges, expected["edges"], atol=1e-9)
    assert not np.allclose(edges, expected["wrong_edges_all_patients"])
    assert not np.allclose(edges, expected["wrong_edges_slide_level"])
    labels = bin_labels(patients["time"].to_numpy(), edges)
    assert dict(zip(patients.index, labels.tolist())) == expected["disc_label_by_patient"]
    class_label = 2 * labels + patients["censorship"].to_numpy()
    assert dict(zip(patients.index, class_label.tolist())) == expected["class_label_2bin_plus_c"]


def test_c15_slide_level_input_gives_the_wrong_edges():
    """Feeding slides instead of patients duplicates P1 and P4 and moves the quantiles (the bug of the case)."""
    case = _case("C15", C15)
    slides = pd.DataFrame(case["input"]["slides"], columns=["case_id", "time", "censorship"])
    edges = fit_bins(slides["time"].to_numpy(), 1 - slides["censorship"].to_numpy(), 4, eps=0.0)
    np.testing.assert_allclose(edges, case["expected"]["wrong_edges_slide_level"])


def test_c16_nll_alpha_weighting_and_censorship_convention():
    case = _case("C16", C16)
    hazards = torch.tensor(case["input"]["hazards"], dtype=torch.float64)
    y = torch.tensor(case["input"]["bin_label_Y"])
    c = torch.tensor(case["input"]["censorship_c"], dtype=torch.float64)
    expected = case["expected"]
    for alpha, key in zip(case["input"]["alphas"], ["alpha_0", "alpha_0.15", "alpha_0.4"]):
        assert nll_loss(hazards, y, c, alpha).item() == pytest.approx(expected[key], abs=1e-9)
    # alpha = 1 keeps only the uncensored term: the value of the buggy "alpha * censored" variant at alpha 0.
    assert nll_loss(hazards, y, c, 1.0).item() == pytest.approx(expected["wrong_prefix_patho_bench_alpha_0"], abs=1e-9)
    # Passing the event indicator where censorship is expected is the other known bug.
    assert nll_loss(hazards, y, 1 - c, 0.0).item() == pytest.approx(
        expected["wrong_censorship_used_as_event_alpha_0"], abs=1e-9
    )


def test_discrete_targets_convert_event_to_censorship_once():
    case = _case("C16", C16)
    event = 1 - np.array(case["input"]["censorship_c"])
    edges = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    time = np.array([2.5, 1.5, 3.5])  # bins 2, 1, 3 as in the case
    targets = discrete_targets(time, event, edges)
    assert targets["y_bin"].tolist() == case["input"]["bin_label_Y"]
    assert targets["censorship"].tolist() == case["input"]["censorship_c"]
    hazards = torch.tensor(case["input"]["hazards"], dtype=torch.float64)
    loss = nll_loss(hazards, targets["y_bin"], targets["censorship"], 0.0)
    assert loss.item() == pytest.approx(case["expected"]["alpha_0"], abs=1e-7)


def test_fit_bins_merges_tied_quantiles_and_rejects_no_events():
    time = np.array([1.0, 1.0, 1.0, 1.0, 5.0, 8.0])
    edges = fit_bins(time, np.ones(6), 4, eps=0.5)
    assert np.all(np.diff(edges) > 0)
    np.testing.assert_allclose(edges, [0.5, 1.0, 4.0, 8.5])  # quantiles 1, 1, 1, 4, 8 -> inner {1, 4}
    with pytest.raises(DataError, match="no uncensored patient"):
        fit_bins(time, np.zeros(6), 4)
    with pytest.raises(DataError, match="n_bins"):
        fit_bins(time, np.ones(6), 0)


def test_bin_labels_clip_times_outside_the_training_edges():
    edges = np.array([1.0, 2.0, 3.0])
    assert bin_labels(np.array([0.2, 1.0, 1.99, 2.0, 2.99, 50.0]), edges).tolist() == [0, 0, 0, 1, 1, 1]


def test_survival_on_grid_is_a_step_function_over_bin_ends():
    hazards = np.array([[0.5, 0.5], [0.0, 1.0]])
    edges = np.array([0.0, 1.0, 2.0])
    grid = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    np.testing.assert_allclose(
        survival_on_grid(hazards, edges, grid), [[1.0, 0.5, 0.5, 0.25, 0.25], [1.0, 1.0, 1.0, 0.0, 0.0]]
    )
    np.testing.assert_allclose(risk_from_hazards(hazards), [-0.75, -1.0])
    risk, survival = discrete_prediction(hazards, edges, grid)
    assert risk.shape == (2,) and survival.shape == (2, 5)


# ---------------------------------------------------------------- heads


def test_cox_loss_breslow_ties_hand_computed():
    risk = torch.tensor([0.0, 1.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    time = torch.tensor([1.0, 2.0, 2.0, 3.0])
    event = torch.tensor([1, 1, 1, 0])
    # Breslow: both deaths at t=2 share the risk set {2, 3, 4}:
    # -(1/3) [(0 - log(1 + e + e^2 + e^.5)) + (1 - log(e + e^2 + e^.5)) + (2 - log(e + e^2 + e^.5))]
    loss = cox_loss(risk, time, event)
    assert loss.item() == pytest.approx(1.491581319385487, abs=1e-12)
    assert loss.item() != pytest.approx(1.3042797960756738, abs=1e-6)  # Efron's value
    loss.backward()
    assert risk.grad is not None and torch.isfinite(risk.grad).all()


def test_cox_loss_without_events_is_zero_with_zero_gradient():
    risk = torch.tensor([0.3, -1.0], requires_grad=True)
    loss = cox_loss(risk, torch.tensor([1.0, 2.0]), torch.tensor([0, 0]))
    loss.backward()
    assert loss.item() == 0.0 and risk.grad.abs().sum().item() == 0.0


def test_hazard_head_outputs_probabilities():
    hazards = HazardHead(8, 4)(torch.randn(5, 8) * 100)
    assert hazards.shape == (5, 4) and hazards.min() >= 0 and hazards.max() <= 1


# ---------------------------------------------------------------- encoders


def test_snn_keeps_activations_normalised():
    torch.manual_seed(0)
    snn = SNN(512, (256, 256, 256), dropout=0.25).eval()
    out = snn(torch.randn(4096, 512))
    assert out.shape == (4096, 256)
    assert abs(out.mean().item()) < 0.1
    assert 0.8 < out.std().item() < 1.2


def test_gene_symbol_strips_tcga_and_survset_names():
    assert gene_symbol("TP53_rnaseq") == "TP53"
    assert gene_symbol("num_HS_A1BG") == "A1BG"
    assert gene_symbol("MYC") == "MYC"


def test_gene_groups_families_then_chunks():
    columns = ["TP53_rnaseq", "MYC_rnaseq", "EGFR_rnaseq", "AAA_rnaseq", "BBB_rnaseq", "CCC_rnaseq"]
    families = {"suppressors": {"TP53"}, "oncogenes": {"MYC", "EGFR", "TP53"}, "tiny": {"ZZZ"}}
    names, groups = gene_groups(columns, families, chunk_size=2)
    assert names == ["suppressors", "oncogenes", "chunk_0", "chunk_1"]
    assert [g.tolist() for g in groups] == [[0], [0, 1, 2], [3, 4], [5]]
    names, groups = gene_groups(columns, families, chunk_size=4, min_size=2)
    assert names == ["oncogenes", "chunk_0"] and groups[1].tolist() == [3, 4, 5]
    names, _ = gene_groups(columns, None, chunk_size=4)
    assert names == ["chunk_0", "chunk_1"]
    with pytest.raises(DataError, match="no columns"):
        gene_groups([], families)


def test_gene_families_reads_both_file_formats(tmp_path):
    (tmp_path / "cols.csv").write_text("Family A,Family B\nTP53,MYC\nRB1,\n")
    (tmp_path / "matrix.csv").write_text(",P1,P2\nTP53,1,0\nMYC,1,1\nRB1,0,0\n")
    assert gene_families(str(tmp_path / "cols.csv")) == {"Family A": {"TP53", "RB1"}, "Family B": {"MYC"}}
    assert gene_families(str(tmp_path / "matrix.csv")) == {"P1": {"TP53", "MYC"}, "P2": {"MYC"}}
    assert gene_families("mcat", data_root=tmp_path) is None  # file absent -> caller falls back to chunks
    assert gene_families("chunks") is None
    with pytest.raises(DataError, match="does not exist"):
        gene_families(str(tmp_path / "absent.csv"))


def test_gene_families_real_files():
    if not (DATA / "mcat" / "signatures.csv").is_file():
        pytest.skip(f"real gene family files absent under {DATA} (set MMBENCH_DATA)")
    mcat = gene_families("mcat", DATA)
    assert len(mcat) == 6 and "ABL1" in mcat["Oncogenes"] and "APC" in mcat["Tumor Suppressor Genes"]
    hallmarks = gene_families("hallmarks", DATA)
    assert len(hallmarks) == 50 and "JUNB" in hallmarks["HALLMARK_TNFA_SIGNALING_VIA_NFKB"]


def test_group_tokenizer_tokens_depend_only_on_their_group():
    torch.manual_seed(0)
    groups = [np.array([0, 1]), np.array([2, 3, 4])]
    tokenizer = GroupTokenizer(groups, dim=8, hidden=16).eval()
    x = torch.randn(3, 5)
    tokens = tokenizer(x)
    assert tokens.shape == (3, 2, 8)
    x2 = x.clone()
    x2[:, 3] += 5.0
    tokens2 = tokenizer(x2)
    torch.testing.assert_close(tokens[:, 0], tokens2[:, 0])
    assert not torch.allclose(tokens[:, 1], tokens2[:, 1])


def test_variable_tokenizer_is_value_times_weight_plus_bias():
    tokenizer = VariableTokenizer(3, dim=4)
    x = torch.tensor([[1.0, 2.0, -1.0]])
    tokens = tokenizer(x)
    assert tokens.shape == (1, 3, 4)
    torch.testing.assert_close(tokens[0, 1], 2.0 * tokenizer.weight[1] + tokenizer.bias[1])


def test_widths_parses_params():
    assert widths("256,128") == (256, 128) and widths([64]) == (64,) and widths(32) == (32,)
    with pytest.raises(MethodError, match="positive integers"):
        widths("a,b")


# ---------------------------------------------------------------- fusion


def test_concat_fusion_shape():
    assert concat_fusion([torch.zeros(2, 3), torch.ones(2, 5)]).shape == (2, 8)


def test_attention_pool_ignores_padding():
    torch.manual_seed(0)
    pool = AttentionPool(4).eval()
    tokens = torch.randn(1, 3, 4)
    padded = torch.cat([tokens, torch.randn(1, 2, 4) * 10], dim=1)
    mask = torch.tensor([[False, False, False, True, True]])
    pooled, weights = pool(padded, mask)
    expected, _ = pool(tokens)
    torch.testing.assert_close(pooled, expected)
    assert weights[0, 3:].sum().item() == 0.0 and weights.sum().item() == pytest.approx(1.0)


def test_coattention_shapes_and_padded_context():
    torch.manual_seed(0)
    layer = CoAttention(dim=16, n_heads=4, n_layers=1, dropout=0.0).eval()
    query, context = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    fused, attention = layer(query, context)
    assert fused.shape == (2, 32) and attention.shape == (2, 6, 5)
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(2, 6))
    padded = torch.cat([context, torch.randn(2, 3, 16)], dim=1)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 5:] = True
    fused_padded, attention_padded = layer(query, padded, mask)
    torch.testing.assert_close(fused_padded, fused, atol=1e-5, rtol=1e-5)
    assert attention_padded[:, :, 5:].abs().max().item() == 0.0


# ---------------------------------------------------------------- training loop (SYNTHETIC data)


class _Linear(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.risk = nn.Linear(p, 1)

    def forward(self, inputs):
        return self.risk(inputs["x"]).squeeze(-1)


def _cox_loss_fn(risk, targets):
    return cox_loss(risk, targets["time"], targets["event"])


def _synthetic(n, seed):
    """SYNTHETIC: exponential times whose log-hazard is 1.5 * x0; 30 % censored."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    time = rng.exponential(np.exp(-1.5 * x[:, 0])).astype(np.float32)
    event = (rng.random(n) > 0.3).astype(np.float32)
    return {"x": torch.from_numpy(x)}, {"time": torch.from_numpy(time), "event": torch.from_numpy(event)}


def _fit(seed=0, **config):
    torch.manual_seed(seed)
    model = _Linear(5)
    tr_x, tr_y = _synthetic(400, 1)
    va_x, va_y = _synthetic(200, 2)
    calls = []
    result = train_model(model, _cox_loss_fn, tr_x, tr_y, va_x, va_y,
                         TrainConfig(**{"epochs": 30, "lr": 1e-2, "seed": seed, **config}),
                         risk_fn=lambda r: r.numpy(), val_labels=(va_y["time"].numpy(), va_y["event"].numpy()),
                         progress=lambda e, n: calls.append((e, n)))
    return model, result, calls, (va_x, va_y)


def test_train_learns_the_planted_signal_and_restores_best_weights():
    model, result, calls, (va_x, va_y) = _fit()
    weight = model.risk.weight.detach()[0]
    assert weight[0] > 0.8 and weight[1:].abs().max() < 0.5
    val_loss = _cox_loss_fn(predict(model, va_x), va_y).item()
    assert val_loss == pytest.approx(result.history[result.best_epoch - 1]["val_loss"], rel=1e-6)
    assert result.best_score == pytest.approx(min(h["val_loss"] for h in result.history))
    assert calls[0] == (1, 30) and len(calls) == result.epochs_run


def test_train_is_deterministic_given_the_seed():
    a, *_ = _fit(seed=3)
    b, *_ = _fit(seed=3)
    c, *_ = _fit(seed=4)
    torch.testing.assert_close(a.risk.weight, b.risk.weight)
    assert not torch.allclose(a.risk.weight, c.risk.weight)


def test_train_early_stops_with_patience():
    _, result, _, _ = _fit(epochs=200, lr=5e-2, patience=3)
    assert result.epochs_run == result.best_epoch + 3 < 200


def test_train_monitor_cindex():
    _, result, _, _ = _fit(monitor="cindex")
    assert 0.6 < result.best_score <= 1.0
    assert result.best_score == pytest.approx(max(h["val_score"] for h in result.history))


def test_train_config_errors_and_coercion():
    config = TrainConfig.from_params(lr="1e-3", epochs="5", optimizer="adamw", unknown=1)
    assert config.lr == 1e-3 and config.epochs == 5 and config.optimizer == "adamw"
    with pytest.raises(MethodError, match="'epochs' must be int"):
        TrainConfig.from_params(epochs="many")
    with pytest.raises(MethodError, match="unknown optimizer"):
        _fit(optimizer="sgd")
    with pytest.raises(MethodError, match="unknown monitor"):
        _fit(monitor="auc")


# ---------------------------------------------------------------- pycox adapter


def test_survival_at_cuts_on_grid():
    survival = np.array([[0.9, 0.6, 0.3]])
    cuts = np.array([0.0, 2.0, 4.0])
    grid = np.array([-1.0, 0.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(survival_at_cuts_on_grid(survival, cuts, grid), [[1.0, 0.9, 0.9, 0.6, 0.3]])
