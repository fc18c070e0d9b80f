"""asv: mmbench's hot paths and their reference implementations, side by side.

The workloads are those of ``mmbench speedcheck`` (benchmark/speedcheck.py):
for each check, ``time_current`` times mmbench's implementation and
``time_reference`` the fixed reference implementation of the same work on
the same input, so that asv's history shows both and their ratio. Inputs are
SYNTHETIC except the runner check (the real GSE7390 task shipped with
scikit-survival) and the slide check (the real CC0 slide, skipped when absent).
"""

from benchmark.speedcheck import CHECKS, CheckSkipped, workload


class HotPaths:
    params = [list(CHECKS)]
    param_names = ["check"]
    timeout = 120
    number = 1
    repeat = (3, 7, 20.0)

    def setup(self, name):
        try:
            self.work = workload(name)
        except CheckSkipped as exc:
            raise NotImplementedError(str(exc)) from None
        self.work.current()  # warm-up: imports, caches

    def teardown(self, name):
        self.work.cleanup()

    def time_current(self, name):
        self.work.current()

    def time_reference(self, name):
        self.work.reference()


class MILMemory:
    """Peak memory of one MIL training step (packed bags) vs the per-bag reference."""

    timeout = 120

    def setup(self):
        try:
            self.work = workload("mil-step")
        except CheckSkipped as exc:
            raise NotImplementedError(str(exc)) from None

    def peakmem_current(self):
        self.work.current()

    def peakmem_reference(self):
        self.work.reference()
