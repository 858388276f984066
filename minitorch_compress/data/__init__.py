"""CIFAR-10 data: locating/downloading/loading (``cifar10``), per-batch transforms
(``transforms``) and mini-batch iteration (``loader``).

Importing this package reads no files; data is loaded only when ``load_cifar10`` is called.
"""
