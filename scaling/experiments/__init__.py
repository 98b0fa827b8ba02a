"""The committed experiments' shared code: what their drivers (benchmarks/*_study.py) run and
what the tests that check their claims recompute, so neither imports the other."""
