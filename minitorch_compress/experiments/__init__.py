"""The labs' experiments as functions; `labs/*.py` only parse arguments and call these.

Each lab module (`lab1` .. `lab4`, and `model_files`) defines its options as a frozen
dataclass (`Lab2Options`, ...: `options.LabOptions` plus the lab's knobs) and one function per
part, ``part_x(options, data=None) -> payload``; ``run(options)`` runs the parts
``options.part`` names on one loaded data set and writes their results (`common`). What a
lab shares with its report lives in ``lab<N>_layout.py``, which imports no engine code.
"""
