"""flowcore's benchmarks: every figure is a ratio against a baseline measured in the same run.

``python -m bench`` runs every section and prints one table per section, with the target from
the issues and PASS/MISS beside each figure. Sections live in one module each (``overhead``,
``makespan``, ``fanout``, ``durability``, ``simulated``, ``scaling``); graphs, baselines, timing and tables are
shared. Nothing here is imported by flowcore itself.
"""
