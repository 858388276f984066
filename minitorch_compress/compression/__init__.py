"""Model compression (Labs 2 and 3): masks, magnitude pruning, reports."""

from minitorch_compress.compression.masks import (
    MaskHook,
    Masks,
    apply_masks,
    layers_by_name,
    mask_from_weights,
    prunable_layers,
    sparsity_of_masks,
    weight_layers,
    zero_masked_momentum,
)
from minitorch_compress.compression.metrics import (
    count_levels,
    format_sparsity_table,
    plot_sparsity,
    sparsity_report,
)
from minitorch_compress.compression.prune import (
    IterativePruningHook,
    global_prune_by_percentage,
    magnitude_mask,
    percentile_threshold,
    prune_by_percentage,
    prune_model_by_percentage,
)

__all__ = [
    "Masks", "MaskHook", "apply_masks", "layers_by_name", "mask_from_weights",
    "prunable_layers", "sparsity_of_masks", "weight_layers", "zero_masked_momentum",
    "count_levels", "format_sparsity_table", "plot_sparsity", "sparsity_report",
    "IterativePruningHook", "global_prune_by_percentage", "magnitude_mask",
    "percentile_threshold", "prune_by_percentage", "prune_model_by_percentage",
]
