"""TEST method: its pretrained state is the list of patient ids (cohorts, bag files) its pretrain received."""

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
        # one entry per slide file of the corpus, and the corpus patient it was given to
        self.bag_files = np.asarray([] if bags is None else [f for files in bags.paths for f in files], dtype=str)
        self.bag_owner = np.asarray([] if bags is None else [pid for pid, files in zip(bags.patient_id, bags.paths)
                                                               for _ in files], dtype=str)

    def pretrained_state(self):
        return {"patient_id": self.ids, "cohort": self.cohorts, "labelled": np.array([self.labelled]),
                "bag_files": self.bag_files, "bag_owner": self.bag_owner}

    def load_pretrained(self, state, ctx):
        self.loaded = state

    def fit(self, train, val, ctx):
        if self.params.get("pretrain_strategy", "none") not in ("none",) and self.params.get("regime") != "scratch":
            assert self.loaded is not None and "patient_id" in self.loaded, "pretrained state was not loaded"
        self.n_train = train.n

    def predict(self, data, ctx):
        return Prediction(risk=np.arange(data.n, dtype=np.float64))
