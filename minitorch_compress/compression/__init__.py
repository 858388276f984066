"""Model compression (Labs 2-4): masks, magnitude pruning, STE quantization, channel pruning
(group Lasso and the smaller dense network it leaves), reports."""

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
    sparsity_report,
)
from minitorch_compress.compression.prune import (
    IterativePruningHook,
    global_prune_by_percentage,
    magnitude_mask,
    percentile_threshold,
    prune_below,
    prune_by_percentage,
    prune_model_by_percentage,
)
from minitorch_compress.compression.quant import (
    MODES,
    QuantizeSTE,
    QuantMode,
    WeightQuantizer,
    bits_per_layer,
    clear_weight_quantization,
    quantization_step,
    quantize_array,
    quantize_ste,
    quantized_state,
    set_bits_per_layer,
    set_weight_quantization,
    zeros_destroyed,
)
from minitorch_compress.compression.structured import (
    GroupLassoHook,
    group_norms,
    group_soft_threshold,
    l1_filter_keep,
    resnet20_macs,
    shrink,
    surviving_channels,
)

__all__ = [
    "Masks", "MaskHook", "apply_masks", "layers_by_name", "mask_from_weights",
    "prunable_layers", "sparsity_of_masks", "weight_layers", "zero_masked_momentum",
    "count_levels", "format_sparsity_table", "sparsity_report",
    "IterativePruningHook", "global_prune_by_percentage", "magnitude_mask",
    "percentile_threshold", "prune_below", "prune_by_percentage", "prune_model_by_percentage",
    "MODES", "QuantMode", "QuantizeSTE", "WeightQuantizer", "bits_per_layer",
    "clear_weight_quantization",
    "quantization_step", "quantize_array", "quantize_ste", "quantized_state",
    "set_bits_per_layer", "set_weight_quantization", "zeros_destroyed",
    "GroupLassoHook", "group_norms", "group_soft_threshold", "l1_filter_keep",
    "resnet20_macs", "shrink", "surviving_channels",
]
