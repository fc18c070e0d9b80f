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
