"""Lab 1: sparse optimisation of a tiny linear model (NumPy only, no autograd, no plotting).

See ``sparse_linear`` for the loss, the update rules and ``run``, and ``prox`` for the sparsity
operators (projection, soft-thresholding, trimmed soft-thresholding).
"""

from minitorch_compress.linear.prox import (
    ZERO_TOL,
    count_nonzero,
    project_top_k,
    soft_threshold,
    trimmed_soft_threshold,
)
from minitorch_compress.linear.sparse_linear import (
    METHODS,
    MU_LAB1,
    SCHEDULES,
    X_LAB1,
    Y_LAB1,
    History,
    best_k_sparse,
    gd_step,
    gradient,
    lasso_kkt_violation,
    loss,
    make_update,
    projected_gd_step,
    prox_step,
    residual,
    run,
    subgradient_step,
    trimmed_prox_step,
)

__all__ = [
    "ZERO_TOL",
    "METHODS",
    "MU_LAB1",
    "SCHEDULES",
    "X_LAB1",
    "Y_LAB1",
    "History",
    "best_k_sparse",
    "count_nonzero",
    "gd_step",
    "gradient",
    "lasso_kkt_violation",
    "loss",
    "make_update",
    "project_top_k",
    "projected_gd_step",
    "prox_step",
    "residual",
    "run",
    "soft_threshold",
    "subgradient_step",
    "trimmed_prox_step",
    "trimmed_soft_threshold",
]
