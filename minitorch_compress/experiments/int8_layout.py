"""Integer inference's names, shared by the experiment that measures it (`experiments.int8`)
and the report that renders it (`reports.int8`): its script, its result files and the
accuracy bounds of issue #35.

Nothing here imports the engine, so the report can read them without loading a kernel.
"""

from __future__ import annotations

SCRIPT = "labs/lab3_int8.py"
RESULT = "int8"  # int8.json, int8.md
#: written by `benchmarks/bench_int8.py --json` (the lead runs it on a quiet machine)
BENCH_RESULT = "bench_int8"
BENCH_COMMAND = "python benchmarks/bench_int8.py --json results/bench_int8.json"
#: the pretrained model's int8 accuracy may be at most this far below (or above) its float
#: accuracy on the same test images
FLOAT_BOUND = 0.003
#: a Lab 3 model's int8 accuracy may be at most this far from its fake-quant table value
GRID_BOUND = 0.002
#: the speed targets at batch 100: ours int8 / ours float (floor), ours int8 / PyTorch int8
SPEEDUP_FLOOR = 2.0
TORCH_GOAL = 1.0
