"""Training never fails on batch arithmetic (issue 10 kind 5, integrity case I01), and the pycox baselines
train under the protocol of every deep baseline (issue 13).

SYNTHETIC cohorts from tests/test_deep_baselines.py (planted signal) and tests/test_mil.py (toy bags).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sksurv.metrics import concordance_index_censored

from benchmark.errors import MethodError
from benchmark.fitcheck import training_summary
from benchmark.method import check_prediction, load_class, load_spec
from benchmark.nn.batching import minibatches
from benchmark.nn.discrete import nll_objective
from benchmark.nn.mil import ABMILEncoder, MILConfig, train_mil
from benchmark.nn.train import TrainConfig, train_model
from benchmark.pretrain.slides import step_plan
from benchmark.pretrain.stage import budget_subset
from test_deep_baselines import BASELINES, DEEP, context, one_thread, synthetic_cardio, synthetic_tcga  # noqa: F401
from test_mil import toy_bags  # noqa: F401  (module fixture)


def test_minibatches_cover_every_patient_once_and_never_end_in_a_batch_of_one():
    for batch_size in (1, 2, 3, 8, 64):
        for n in range(0, 3 * batch_size + 3):
            order = np.random.default_rng(n).permutation(n)
            batches = minibatches(order, batch_size)
            joined = np.concatenate(batches) if batches else np.array([], dtype=int)
            assert np.array_equal(joined, order)  # each patient exactly once, in the epoch's order
            sizes = [len(b) for b in batches]
            if batch_size >= 2 and n >= 2:
                assert min(sizes) >= 2, (n, batch_size, sizes)
            assert max(sizes, default=0) <= max(batch_size + 1, 1)
    # 65 = 64 + 1 -> one batch of 65; 129 = 2 x 64 + 1 -> 64 and 65; 66 -> 64 and 2 (left alone)
    assert [len(b) for b in minibatches(np.arange(65), 64)] == [65]
    assert [len(b) for b in minibatches(np.arange(129), 64)] == [64, 65]
    assert [len(b) for b in minibatches(np.arange(66), 64)] == [64, 2]
    assert [len(b) for b in minibatches(np.arange(3), 1)] == [1, 1, 1]
    with pytest.raises(MethodError, match="batch size must be at least 1"):
        minibatches(np.arange(3), 0)


def test_tabular_loop_trains_batch_norm_on_64k_plus_1_patients():
    """A net with BatchNorm (what pycox's MLPs hold) trains on 65 patients; every train-mode batch has >= 2."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(65, 4)).astype(np.float32))
    t = torch.from_numpy(rng.exponential(size=65).astype(np.float32))
    e = torch.ones(65)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    sizes = []
    model.register_forward_pre_hook(lambda m, a: sizes.append(len(a[0])) if m.training else None)
    from benchmark.nn.heads import cox_loss

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, inputs):
            return self.net(inputs["x"]).squeeze(-1)

    result = train_model(Wrap(), lambda o, tg: cox_loss(o, tg["time"], tg["event"]), {"x": x}, {"time": t, "event": e},
                         {"x": x[:20]}, {"time": t[:20], "event": e[:20]},
                         TrainConfig(epochs=3, batch_size=64, patience=3, lr=1e-2))
    assert result.epochs_run == 3
    assert sizes == [65, 65, 65]  # the batch of one joined the batch before it, every epoch


def test_mil_loop_never_takes_a_step_of_one_bag(toy_bags):
    """60 bags, 59 per step: the step of one bag joins the first (a BatchNorm over bags would fail on it)."""

    class BagNormNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = ABMILEncoder(8, 16, 8, dropout=0.0)
            self.norm = torch.nn.BatchNorm1d(16)
            self.head = torch.nn.Sequential(torch.nn.Linear(16, 4), torch.nn.Sigmoid())

        def forward(self, bags, inputs):
            return self.head(self.norm(self.encoder(bags)))

    torch.manual_seed(0)
    model = BagNormNet()
    sizes = []
    model.norm.register_forward_pre_hook(lambda m, a: sizes.append(len(a[0])) if m.training else None)
    assert toy_bags.n == 60
    result = train_mil(model, nll_objective(), toy_bags, None, 8,
                       MILConfig(epochs=2, lr=1e-2, bags_per_step=59, max_patches_per_batch=100_000))
    assert result.epochs_run == 2 and sizes == [60, 60]


def test_pretraining_batches_never_hold_one_patient_and_lose_nobody():
    """The pretraining loops draw full batches of min(batch, n) and reshuffle: 257 = 256 + 1 patients."""
    plan = step_plan(257, 256, 6, np.random.default_rng(0))
    assert all(len(p) == 256 for p in plan)
    assert set(np.concatenate(plan)) == set(range(257))  # the patient a pass leaves over is drawn in another pass
    assert all(len(p) == 2 for p in step_plan(2, min(256, 2), 3, np.random.default_rng(0)))


def _fit(name, cohort, train, val, tmp_path, **params):
    spec = load_spec(BASELINES / name)
    extra = {"gene_groups": "chunks", "chunk_size": 8} if name == "crossattn" else {}
    method = load_class(spec)(**{**spec.params, "epochs": 4, "patience": 4, **extra, **params})
    ctx = context(cohort, tmp_path)
    method.fit(train, val, ctx)
    return method, ctx


@pytest.mark.filterwarnings("ignore:cuts are not unique")
@pytest.mark.filterwarnings("ignore:All-NaN slice")
@pytest.mark.parametrize("name", DEEP)
def test_every_deep_tabular_baseline_fits_65_training_patients_and_tiny_budgets(name, tmp_path):
    """I01: 65 = 64 + 1 training patients at the default batch size 64 (deephit and logistic-hazard failed with
    "Expected more than 1 value per channel when training"), a 5 % label-budget subset and 3 patients."""
    cohort = synthetic_cardio(n=95) if name != "snn" else synthetic_tcga(n=95)
    train, val, test = cohort.take(np.arange(65)), cohort.take(np.arange(65, 80)), cohort.take(np.arange(80, 95))
    tiny = budget_subset(train, 0.05, 0, 0)
    assert train.n == 65 and tiny.n < 8
    for subset in (train, tiny, train.take(np.array([0, 1, 2]))):
        method, ctx = _fit(name, cohort, subset, val, tmp_path)
        prediction = check_prediction(method.predict(test.without_labels(), ctx), test.n, len(ctx.time_grid), name)
        assert np.isfinite(prediction.risk).all()
        summary = training_summary(method)
        assert summary["n_fits"] >= 1 and 1 <= summary["best_epoch"] <= summary["epochs_run"] <= 4


@pytest.mark.parametrize("name", ["deephit", "logistic-hazard"])
def test_pycox_baselines_select_on_val_harrell_c_and_keep_a_train_result(name, tmp_path):
    cohort = synthetic_tcga(n=300)
    train, val = cohort.take(np.arange(200)), cohort.take(np.arange(200, 300))
    method, ctx = _fit(name, cohort, train, val, tmp_path, epochs=12, patience=3)
    result = method.result
    assert method.train_params["monitor"] == "cindex" and load_spec(BASELINES / name).params["patience"] == 20
    scores = [h["val_score"] for h in result.history]
    assert len(scores) == result.epochs_run
    assert result.best_epoch == int(np.argmax(scores)) + 1 and result.best_score == max(scores)
    # stopped by patience on the val C, or ran out of epochs
    assert result.epochs_run == 12 or result.epochs_run - result.best_epoch == 3
    # the restored weights are the selected epoch's: their val C is the recorded best
    risk = method.predict(val.without_labels(), ctx).risk
    c = concordance_index_censored(val.event.astype(bool), val.time, risk)[0]
    assert c == pytest.approx(result.best_score, abs=1e-12)
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in result.history)
    assert training_summary(method) == {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                                        "n_fits": 1, "first_epoch_fits": int(result.best_epoch <= 1)}


def test_pycox_adapter_refuses_a_training_fold_of_one(tmp_path):
    cohort = synthetic_cardio(n=40)
    with pytest.raises(MethodError, match="cannot train a pycox model with 1 training"):
        _fit("deephit", cohort, cohort.take(np.array([0])), cohort.take(np.arange(1, 20)), tmp_path)
