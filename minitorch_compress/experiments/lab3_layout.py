"""Lab 3's names, shared by the experiment that runs it (`experiments.lab3`) and the report
that renders it (`reports.lab3`): its script, its parts and the bit widths of each.

Nothing here imports the engine, so the report can read them without loading a kernel.
"""

SCRIPT = "labs/lab3_quantization.py"  # as recorded in the provenance of the results
PARTS = ("b", "c", "d", "e")
FINETUNE_PARTS = ("c", "d", "e")
BITS_B = ("6", "5", "4", "3", "2")  # part (b); the strings are the JSON keys
BITS_QAT = ("4", "3", "2")  # parts (c) and (d)
