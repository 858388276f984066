"""Step through one training step of ResNet-20, from the model down to the kernels.

Usage (from the repository root)::

    python labs/step_through.py                   # reference kernels, two 32x32 images
    python labs/step_through.py --kernels fast --image-size 8   # the numba kernels, tiny

It builds ResNet-20 (seeded), makes two random images and labels (seeded), and runs one
forward pass, the cross-entropy loss, the backward pass and one SGD step, on one thread and
on the kernels chosen with ``--kernels`` (`kernels/sets.py` tables which function each op
calls). It prints the shape after each layer of the forward::

    input          (2, 3, 32, 32)
    head_conv      (2, 16, 32, 32)    conv 3x3 + batch norm + ReLU
    body_op.0      (2, 16, 32, 32)    basic block: two convs, shortcut, add, ReLU
    ...
    body_op.3      (2, 32, 16, 16)    stride 2: half the size, twice the channels
    ...
    body_op.8      (2, 64, 8, 8)
    pool           (2, 64)            global average pool
    final_fc       (2, 10)            logits

then the loss, the gradient of the first conv's weights and how far the SGD step moved them.

Stopping in a kernel. The reference kernels (`kernels/reference.py`) are plain NumPy, so pdb
stops in them as in any Python code. pdb stops before this script's first line, when nothing
is imported yet, so import the kernel module first, then name the function::

    python -m pdb -c "import minitorch_compress.kernels.reference" \\
        -c "b minitorch_compress.kernels.reference.conv2d_forward" -c c labs/step_through.py

It stops at the first line of ``reference.conv2d_forward``, called by the head conv:
``where`` shows the way down (``main`` here -> ``ConvBN.forward`` -> ``nn.Conv2d.forward`` ->
``ops.conv2d`` -> ``Function.apply`` -> ``ops.conv.Conv2d.forward`` -> the kernel),
``p x.shape, w.shape`` prints ``((2, 3, 32, 32), (16, 3, 3, 3))``, ``c`` goes on to the next
conv (``body_op.0.conv1``: ``(2, 16, 32, 32), (16, 16, 3, 3)``), ``q`` quits. The backward
kernels stop the same way (``b minitorch_compress.kernels.reference.conv2d_grad_weight``).

The fast kernels are numba functions; ``NUMBA_DISABLE_JIT=1`` runs them as plain Python, so
pdb can stop in them too, slowly: use ``--image-size 8`` (every 3x3 conv on 8x8 images still
runs the register-tiled kernel, `kernels/direct_conv_tiled.py`)::

    NUMBA_DISABLE_JIT=1 python -m pdb \\
        -c "import minitorch_compress.kernels.direct_conv_tiled" \\
        -c "b minitorch_compress.kernels.direct_conv_tiled._tiled3x3" -c c \\
        labs/step_through.py --kernels fast --image-size 8

stops in ``_tiled3x3`` for the head conv (``p x.shape, w9.shape``: ``((2, 3, 8, 8), (16,
27))``); there ``b _tile4x4`` (``_tile4x3`` on a CPU with 16 vector registers) and ``c``
stop inside one tile, 4 output channels x 4 (3) vectors of 8 positions (``p k0, c_in``:
``(0, 3)``). pdb reaches the first stop in about a second; the whole step takes about 20 s
with the compiler off (at 32x32, minutes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minitorch_compress import Tensor, ops, set_num_threads, use_kernels
from minitorch_compress.cli import OneLineParser
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.optim import SGD

NOTES = {
    "head_conv": "conv 3x3 + batch norm + ReLU",
    "body_op.0": "basic block: two convs, shortcut, add, ReLU",
    "body_op.3": "stride 2: half the size, twice the channels",
    "body_op.6": "stride 2 again",
    "pool": "global average pool",
    "final_fc": "logits",
}


def show(name: str, value: Tensor) -> None:
    """Print one line: the layer's name, the shape of its output, and what it did."""
    print(f"{name:<14} {str(value.shape):<18} {NOTES.get(name, '')}".rstrip())


def forward(model: ResNet20, x: Tensor) -> Tensor:
    """`ResNet20.forward` written out layer by layer, printing each output's shape."""
    show("input", x)
    out = model.head_conv(x)
    show("head_conv", out)
    for i, block in enumerate(model.body_op):
        out = block(out)
        show(f"body_op.{i}", out)
    pooled = ops.global_avg_pool2d(out)
    show("pool", pooled)
    logits = model.final_fc(pooled)
    show("final_fc", logits)
    return logits


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", choices=("reference", "fast"), default="reference",
                        help="the kernel set every op runs on (default: reference)")
    parser.add_argument("--image-size", type=int, choices=(8, 16, 32), default=32,
                        help="height and width of the two random images (default 32)")
    args = parser.parse_args(argv)

    set_num_threads(1)  # every kernel on this thread: the debugger sees the whole batch
    use_kernels(args.kernels)
    model = ResNet20(rng=np.random.default_rng(0)).train()
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((2, 3, args.image_size, args.image_size)).astype(np.float32))
    labels = rng.integers(0, 10, size=2)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)

    logits = forward(model, x)
    loss = ops.cross_entropy(logits, labels)
    print(f"loss           {float(loss.data):.4f}")
    optimizer.zero_grad()
    loss.backward()
    first = model.head_conv[0].conv.weight
    print(f"gradient of head_conv.0.conv.weight {first.grad.shape}, "
          f"norm {float(np.linalg.norm(first.grad)):.4f}")
    before = first.data.copy()
    optimizer.step()
    print(f"SGD step moved it by {float(np.linalg.norm(first.data - before)):.4f} "
          f"(lr 0.1 x the gradient's norm, the first step of momentum SGD)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
