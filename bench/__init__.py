"""Benchmarks ("fast and frugal"): ``make bench`` / ``python -m bench``.

Every figure is measured on loopback against Azurite and the Graph simulator, beside its
floor (the same work done the cheapest way, measured in the same run) or its target. See
bench/README.md for what each part measures and how.
"""
