"""Reports: pure functions from result files (JSON, plus the figures they write) to pages.

* `format`  - number formats, run labels, page head/tail, shortfall notes, accuracy figure;
* `figures` - the per-layer sparsity bar chart (Labs 2 and 3);
* `lab1` - ``lab1.md`` from ``lab1.json``, and Lab 1's figures from the runs' histories;
* `lab2`, `lab3` - ``lab2.md`` / ``lab3.md`` and their figures;
* `compression` - ``compression.md``, the lab models as compressed files;
* `lab4` - ``lab4.md``: structured sparsity and the course's true/false claims;
* `sparse` - ``sparse.md``, the sparse-inference benchmark (``benchmarks/bench_sparse.py``);
* `summary` - ``REPORT.md``, every lab beside the published numbers, and progress snapshots.

Experiments (`minitorch_compress.experiments`) run and write JSON; they never import this
package, and nothing here runs an experiment: a report imports only the base modules
(`results`, `published`, `recipe`) and the experiments' light ``lab<N>_layout`` modules, so
importing one loads no kernel and no training code (tests/test_layers.py). Published figures
come from `minitorch_compress.published`.
"""
