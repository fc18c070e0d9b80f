"""Frozen means frozen (issue 13): frozen encoders compute in eval mode in every training loop.

SYNTHETIC planted-signal cohort: risk = x0 + 0.5 x1, exponential times, 30 % censoring.
"""

import numpy as np
import torch
from sksurv.metrics import concordance_index_censored
from torch import nn

from benchmark.nn.encoders import SNN
from benchmark.nn.freeze import freeze, frozen_modules_in_train_mode, is_frozen, train_mode
from benchmark.nn.heads import cox_loss
from benchmark.nn.train import TrainConfig, predict, train_model
from benchmark.pretrain.strategies import parameter_groups
from tests.test_mil import toy_bags  # noqa: F401  (module fixture: SYNTHETIC bags)


def planted(n: int, p: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)).astype(np.float32)
    risk = x[:, 0] + 0.5 * x[:, 1]
    time = rng.exponential(1.0 / np.exp(risk)).astype(np.float32)
    event = (rng.uniform(size=n) > 0.3).astype(np.float32)
    return x, time, event


class ProbeNet(nn.Module):
    """A pretrained-style SNN encoder (dropout 0.5) and a linear risk head."""

    def __init__(self, p: int):
        super().__init__()
        self.encoder = SNN(p, (32, 32), dropout=0.5)
        self.drop = nn.Dropout(0.1)  # a parameter-free layer of the trainable part
        self.head = nn.Linear(32, 1)

    def forward(self, inputs):
        return self.head(self.drop(self.encoder(inputs["x"]))).squeeze(-1)


def _loss(out, targets):
    return cox_loss(out, targets["time"], targets["event"])


def test_train_mode_keeps_frozen_submodules_quiet_and_trainable_ones_training():
    torch.manual_seed(0)
    model = ProbeNet(4)
    freeze(model.encoder)
    train_mode(model)
    assert is_frozen(model.encoder) and not is_frozen(model)
    assert not model.encoder.training and not any(m.training for m in model.encoder.modules())
    assert model.training and model.head.training and model.drop.training
    assert frozen_modules_in_train_mode(model) == []
    model.train()  # the old loop's call: the invariant is broken and the check names the culprits
    assert frozen_modules_in_train_mode(model) == ["encoder.net.0", "encoder.net.3"]


def test_probe_trains_and_its_frozen_encoder_gives_the_same_output_in_train_and_eval():
    x, time, event = planted(400)
    xv, tv, ev = planted(200, seed=1)
    torch.manual_seed(0)
    model = ProbeNet(x.shape[1])
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    groups = parameter_groups(model, [model.encoder], "probe", lr=1e-2)
    seen_modes = []
    model.register_forward_pre_hook(lambda m, a: seen_modes.append(frozen_modules_in_train_mode(m)) if m.training else None)
    result = train_model(model, _loss, {"x": torch.from_numpy(x)},
                         {"time": torch.from_numpy(time), "event": torch.from_numpy(event)},
                         {"x": torch.from_numpy(xv)}, {"time": torch.from_numpy(tv), "event": torch.from_numpy(ev)},
                         TrainConfig(epochs=30, batch_size=64, lr=1e-2, patience=30, monitor="cindex"),
                         risk_fn=lambda o: o.numpy(), val_labels=(tv, ev), parameters=groups)
    # the loop ran forward passes in train mode, never with a frozen module training
    assert seen_modes and all(bad == [] for bad in seen_modes)
    # frozen weights did not move; the encoder's output is the same in the model's train and eval modes
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    inputs = torch.from_numpy(x[:50])
    train_mode(model)
    with torch.no_grad():
        in_train = model.encoder(inputs)
    model.eval()
    with torch.no_grad():
        in_eval = model.encoder(inputs)
    assert torch.equal(in_train, in_eval)
    # the head learnt: training patients ranked well above chance, and not restored at epoch 1
    risk = predict(model, {"x": torch.from_numpy(x)}).numpy()
    train_c = concordance_index_censored(event.astype(bool), time.astype(np.float64), risk)[0]
    assert train_c > 0.65
    assert result.best_epoch > 1


def test_fit_check_reads_every_train_result_and_flags_first_epoch_fits():
    from benchmark.fitcheck import fit_flags, harrell_or_none, training_summary
    from benchmark.nn.train import TrainResult

    class Late:  # a late-fusion-like method: one network per modality
        def __init__(self):
            self.results = {"a": TrainResult(best_epoch=1, best_score=0.5, epochs_run=21),
                            "b": TrainResult(best_epoch=9, best_score=0.6, epochs_run=29)}

    assert training_summary(Late()) == {"best_epoch": 1, "epochs_run": 29, "n_fits": 2, "first_epoch_fits": 1}
    assert training_summary(object.__new__(Late)) == {"best_epoch": None, "epochs_run": None, "n_fits": 0,
                                                      "first_epoch_fits": 0}
    # by hand: pairs (1,2) (1,3) (2,3) comparable (events at 1 and 2); risk 3,1,2 orders 2 of 3 -> 2/3
    assert harrell_or_none(np.array([1.0, 2, 3]), np.array([1, 1, 0]), np.array([3.0, 1, 2])) == 2 / 3
    assert harrell_or_none(np.array([1.0, 2]), np.array([1, 1]), np.array([np.nan, 1])) is None
    assert fit_flags({"best_epoch": 1, "train_cindex": 0.45}) == ["stopped at epoch 1", "train C 0.450 <= 0.5"]
    assert fit_flags({"best_epoch": 7, "train_cindex": 0.66}) == []


# --------------------------------------------------------------------------- every loop keeps the invariant


def watch_frozen(*roots):
    """Forward pre-hooks on every module of ``roots``: while a root is in train mode, each forward pass records
    the frozen modules left in train mode (:func:`frozen_modules_in_train_mode`); the invariant wants ``[]``."""
    seen = []
    for root in roots:
        for module in root.modules():
            module.register_forward_pre_hook(
                lambda m, a, root=root: seen.append(frozen_modules_in_train_mode(root)) if root.training else None)
    return seen


class FrozenBagNet(nn.Module):
    """A frozen ABMIL bag encoder (dropout 0.5 inside) and a trainable head with dropout."""

    def __init__(self, dim: int):
        super().__init__()
        from benchmark.nn.mil import ABMILEncoder

        self.encoder = ABMILEncoder(dim, 16, 8, dropout=0.5)
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(16, 4), nn.Sigmoid())

    def forward(self, bags, inputs):
        return self.head(self.encoder(bags))


def test_mil_loop_keeps_frozen_modules_in_eval_mode(toy_bags):
    from benchmark.nn.discrete import nll_objective
    from benchmark.nn.mil import MILConfig, pack, train_mil

    torch.manual_seed(0)
    model = FrozenBagNet(8)
    freeze(model.encoder)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    seen = watch_frozen(model)
    result = train_mil(model, nll_objective(), toy_bags, toy_bags, 8,
                       MILConfig(epochs=3, lr=1e-2, bags_per_step=8, patience=3),
                       parameters=[{"params": list(model.head.parameters())}])
    assert result.epochs_run == 3
    assert seen and all(bad == [] for bad in seen)  # many train-mode forward passes, never a frozen module training
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    # the frozen encoder computes the same in the model's train mode as in eval mode (dropout 0.5 inside)
    bags = pack([np.random.default_rng(k).normal(size=(n, 8)).astype(np.float32) for k, n in enumerate((5, 9, 3))])
    train_mode(model)
    with torch.no_grad():
        in_train = model.encoder(bags)
    model.eval()
    with torch.no_grad():
        in_eval = model.encoder(bags)
    assert torch.equal(in_train, in_eval)


def test_tabular_pretraining_loop_keeps_frozen_modules_in_eval_mode():
    """A corpus encoder frozen before pretraining (e.g. a reused pretrained branch) stays quiet and unchanged."""
    from benchmark.nn.encoders import ModalityEncoders
    from benchmark.pretrain.strategies import PretrainConfig, corpus_preprocessor, corpus_tensors, pretrain_encoders
    from tests.test_pretrain import synthetic_corpus

    corpus = synthetic_corpus()
    prep = corpus_preprocessor(corpus, ["rna", "clinical"])
    inputs, observed = corpus_tensors(prep, corpus, ["rna", "clinical"])
    torch.manual_seed(0)
    encoders = ModalityEncoders(prep.dims(), (32, 16), dropout=0.3).encoders
    freeze(encoders["clinical"])
    before = {k: v.clone() for k, v in encoders["clinical"].state_dict().items()}
    seen = watch_frozen(encoders)
    result = pretrain_encoders(encoders, inputs, observed, "contrastive", PretrainConfig(steps=6, batch_size=64))
    assert len(result.losses) == 6
    assert seen and all(bad == [] for bad in seen)
    assert all(torch.equal(before[k], v) for k, v in encoders["clinical"].state_dict().items())


def test_slide_pretraining_loop_keeps_frozen_modules_in_eval_mode(tmp_path):
    from benchmark.nn.encoders import ModalityEncoders
    from benchmark.nn.mil import ABMILEncoder
    from benchmark.pretrain.slides import corpus_bag_data, pretrain_with_slides
    from benchmark.pretrain.strategies import PretrainConfig, corpus_preprocessor, corpus_tensors
    from tests.test_pretrain_slides import synthetic_slide_corpus

    corpus = synthetic_slide_corpus(tmp_path / "bags")
    prep = corpus_preprocessor(corpus, ["rna"])
    inputs, observed = corpus_tensors(prep, corpus, ["rna"])
    torch.manual_seed(0)
    encoders = ModalityEncoders(prep.dims(), (16, 8), dropout=0.3).encoders
    wsi = ABMILEncoder(8, 16, 8, 8, dropout=0.3)
    freeze(encoders["rna"])
    freeze(wsi.attention)  # a frozen part inside a bag encoder that trains
    seen = watch_frozen(encoders, wsi)
    result = pretrain_with_slides(encoders, wsi, inputs, observed, corpus_bag_data(corpus), 8, "contrastive",
                                  PretrainConfig(steps=4, batch_size=16, bag_patches=16), corpus.cohort)
    assert len(result.losses) == 4
    assert seen and all(bad == [] for bad in seen)


def test_early_fusion_probe_through_the_baseline_trains_on_a_planted_signal(tmp_path):
    """baselines/early-fusion with pretrain_strategy=masked, regime=probe (the issue-13 cell's settings, SYNTHETIC
    planted-signal cohort, a same-cohort unlabelled corpus): the head learns (train C > 0.5, not restored at epoch 1)
    and no forward pass of the training loop sees a frozen encoder in train mode."""
    from benchmark.fitcheck import training_summary
    from benchmark.method import load_class, load_spec
    from benchmark.pretrain.corpus import Corpus
    from tests.test_deep_baselines import BASELINES, context, synthetic_cardio

    cohort = synthetic_cardio(n=400, seed=3)
    train, val = cohort.take(np.arange(300)), cohort.take(np.arange(300, 400))
    corpus = Corpus("same-cohort", "masked", train.patient_id, np.full(train.n, "synthetic", dtype=object),
                    dict(train.modalities), dict(train.kinds))
    spec = load_spec(BASELINES / "early-fusion")
    method = load_class(spec)(**{**spec.params, "pretrain_strategy": "masked", "regime": "probe", "epochs": 25,
                                 "patience": 5, "lr": 1e-3, "pretrain_steps": 100})
    ctx = context(cohort, tmp_path)
    method.pretrain(corpus, ctx)
    fit_globals = type(method).fit.__globals__
    real_train_model, seen = fit_globals["train_model"], []

    def watched_train_model(model, *args, **kwargs):
        seen.append(watch_frozen(model))
        assert frozen_modules_in_train_mode(model) == [] and is_frozen(model.encoders)
        return real_train_model(model, *args, **kwargs)

    fit_globals["train_model"] = watched_train_model
    try:
        method.fit(train, val, ctx)
    finally:
        fit_globals["train_model"] = real_train_model
    assert len(seen) == 1 and seen[0] and all(bad == [] for bad in seen[0])
    risk = method.predict(train.without_labels(), ctx).risk
    train_c = concordance_index_censored(train.event.astype(bool), train.time, risk)[0]
    summary = training_summary(method)
    print(f"probe via early-fusion: train C {train_c:.3f}, best epoch {summary['best_epoch']} of {summary['epochs_run']}")
    assert train_c > 0.6  # log-hazard = laboratory_0 + demographics_0: the true log-hazard ranks them at 0.77
    assert summary["best_epoch"] > 1 and summary["first_epoch_fits"] == 0
