"""Test-set evaluation: accuracy of a model over a whole dataset, in eval mode."""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.data.transforms import normalize
from minitorch_compress.nn.module import Module


def evaluate(model: Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500,
             progress: bool = True, desc: str = "eval") -> float:
    """Top-1 accuracy of `model` on uint8 images (N, 3, 32, 32) with labels (N,).

    The model is put in eval mode (BatchNorm uses its running statistics) and restored to the
    mode it was in afterwards. No graph is recorded.
    """
    predictions = predict(model, images, labels, batch_size, progress, desc)
    return int((predictions == labels).sum()) / max(len(images), 1)


def predict(model: Module, images: np.ndarray, labels: np.ndarray | None = None,
            batch_size: int = 500, progress: bool = True, desc: str = "eval") -> np.ndarray:
    """The predicted class of each image (N,), in eval mode, without a graph; `labels`
    (optional) only feed the progress bar's running accuracy."""
    was_training = model.training
    model.eval()
    correct = seen = 0
    out = np.empty(len(images), dtype=np.int64)
    start = time.perf_counter()
    bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False,
               dynamic_ncols=True)
    try:
        with no_grad():
            for begin in range(0, len(images), batch_size):
                batch = normalize(images[begin:begin + batch_size])
                logits = model(Tensor(batch)).data
                out[begin:begin + len(batch)] = logits.argmax(axis=1)
                if labels is not None:
                    correct += int((out[begin:begin + len(batch)]
                                    == labels[begin:begin + batch_size]).sum())
                seen += len(batch)
                bar.update(len(batch))
                bar.set_postfix(acc=f"{correct / seen:.4f}",
                                img_s=f"{seen / (time.perf_counter() - start):.0f}")
    finally:
        bar.close()
        model.train(was_training)
    return out
