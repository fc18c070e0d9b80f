"""TEST method: its pretrained state is the list of patient ids (cohorts, bag paths) its pretrain received."""

import numpy as np

from benchmark.method import Prediction


class PretrainSpy:
    def __init__(self, **params):
        self.params = params
        self.loaded = None

    def pretrain(self, corpus, ctx):
        self.ids = np.asarray(corpus.patient_id, dtype=str)
        self.cohorts = np.asarray(corpus.cohort, dtype=str)
        self.labelled = corpus.has_labels
        bags = corpus.modalities[corpus.bag_modality] if corpus.bag_modality else None
        self.bag_paths = np.asarray([] if bags is None else bags["bag_paths"].astype(str), dtype=str)

    def pretrained_state(self):
        return {"patient_id": self.ids, "cohort": self.cohorts, "labelled": np.array([self.labelled]),
                "bag_paths": self.bag_paths}

    def load_pretrained(self, state, ctx):
        self.loaded = state

    def fit(self, train, val, ctx):
        if self.params.get("pretrain_strategy", "none") not in ("none",) and self.params.get("regime") != "scratch":
            assert self.loaded is not None and "patient_id" in self.loaded, "pretrained state was not loaded"
        self.n_train = train.n

    def predict(self, data, ctx):
        return Prediction(risk=np.arange(data.n, dtype=np.float64))
