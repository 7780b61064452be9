"""Benchmarks, run on purpose: ``python -m bench [NAME]``. Results go in bench/README.md."""
