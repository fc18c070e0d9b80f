"""asv benchmarks of mmbench (see asv.conf.json at the repository root and tests/asv/README.md)."""
