"""The two kernel sets, and which function each op calls (the switch is `select.py`).

Both sets have the same functions with the same signatures; only the module differs:

================================================  ========================  ===========  ===========
op (its module in ops/), direction                function                  "fast"       "reference"
================================================  ========================  ===========  ===========
Conv2d (conv), forward                            conv2d_forward            conv         reference
Conv2d (conv), backward                           conv2d_backward           conv         reference
BatchNorm2d (normalization), training, forward    batchnorm_train_forward   batchnorm    reference
BatchNorm2d (normalization), training, backward   batchnorm_train_backward  batchnorm    reference
BatchNorm2d (normalization), eval, forward        batchnorm_eval_forward    batchnorm    reference
BatchNorm2d (normalization), eval, backward       batchnorm_eval_backward   batchnorm    reference
AddReLU (normalization), forward                  add_relu_forward          batchnorm    reference
AddReLU (normalization), backward                 relu_backward             batchnorm    reference
conv + eval BN (+ residual) (+ ReLU) (fused)      conv2d_affine_forward     conv         reference
the same on sparse weights (fused)                sparse_conv2d_forward     sparse_conv  reference
================================================  ========================  ===========  ===========

(all modules in `kernels/`). The fast fused forward applies batch norm, residual add and ReLU
to each output row as the conv writes it; the reference one runs the conv, then ``y*a + b``,
then the add and the ReLU. The reference sparse forward adds one shifted input window per
non-zero weight, as the fast sparse kernel does. Within "fast", `kernels/dispatch.py` tables
which kernel computes each conv.
Every other op (elementwise, matmul, pooling, losses, shapes) is plain NumPy in its `ops/`
module and has no fast twin; so are the eval batch norm's coefficients
(`batchnorm.eval_coefficients`), shared by both sets.
"""

from __future__ import annotations

from types import SimpleNamespace

from minitorch_compress.kernels import batchnorm, conv, reference, sparse_conv
from minitorch_compress.kernels.select import kernel_choice

FAST = SimpleNamespace(
    name="fast",
    conv2d_forward=conv.conv2d_forward,
    conv2d_backward=conv.conv2d_backward,
    conv2d_affine_forward=conv.conv2d_affine_forward,
    sparse_conv2d_forward=sparse_conv.sparse_conv2d_forward,
    batchnorm_train_forward=batchnorm.batchnorm_train_forward,
    batchnorm_train_backward=batchnorm.batchnorm_train_backward,
    batchnorm_eval_forward=batchnorm.batchnorm_eval_forward,
    batchnorm_eval_backward=batchnorm.batchnorm_eval_backward,
    add_relu_forward=batchnorm.add_relu_forward,
    relu_backward=batchnorm.relu_backward,
)

REFERENCE = SimpleNamespace(
    name="reference",
    conv2d_forward=reference.conv2d_forward,
    conv2d_backward=reference.conv2d_backward,
    conv2d_affine_forward=reference.conv2d_affine_forward,
    sparse_conv2d_forward=reference.sparse_conv2d_forward,
    batchnorm_train_forward=reference.batchnorm_train_forward,
    batchnorm_train_backward=reference.batchnorm_train_backward,
    batchnorm_eval_forward=reference.batchnorm_eval_forward,
    batchnorm_eval_backward=reference.batchnorm_eval_backward,
    add_relu_forward=reference.add_relu_forward,
    relu_backward=reference.relu_backward,
)

#: Each kernel set by its name in `select.KERNEL_SETS`.
KERNEL_NAMESPACES = {"fast": FAST, "reference": REFERENCE}


def active_kernels() -> SimpleNamespace:
    """The set the ops call now (`select.kernel_choice`): `FAST` or `REFERENCE`, a namespace
    of the functions in the table above plus its `name`."""
    return KERNEL_NAMESPACES[kernel_choice()]
