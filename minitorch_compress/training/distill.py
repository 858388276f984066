"""Knowledge distillation (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural
Network"): a student learns from the labels and from a teacher's softened outputs.

With temperature T, softened probabilities are ``softmax(logits / T)``: a larger T spreads the
teacher's probability over the wrong classes too, and how it ranks them ("a cat looks more like
a dog than a truck") is what the student learns beyond the label. The loss of a batch is::

    (1 - alpha) * CE(student, labels)
        + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

both terms a mean over the batch. The T^2 keeps the soft term's gradient the same size
whatever T is (its gradient with respect to the student's logits is
``T * (softmax(student / T) - softmax(teacher / T)) / N``, about 1/T^2 of what it is at T = 1
for large T, Hinton et al. section 2).

Defaults: T = 4 and alpha = 0.9, the knowledge-distillation baseline on CIFAR of Tian,
Krishnan and Isola (ICLR 2020, "Contrastive Representation Distillation", their RepDistiller
code: T = 4, 0.9 on the soft term, 0.1 on the labels, the T^2 factor and a batch mean as
here); Hinton et al. themselves report temperatures of 2-20 and a soft term weighted well
above the hard one.

The teacher's logits come from the same augmented batch as the student's, computed in eval
mode (running batch-norm statistics) and without a graph (`teacher_logits`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from minitorch_compress import ops
from minitorch_compress.autograd import no_grad
from minitorch_compress.autograd.function import Context, Function
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.errors import MinitorchError
from minitorch_compress.nn.module import Module
from minitorch_compress.ops.losses import log_softmax_array


@dataclass(frozen=True)
class DistillConfig:
    """The distillation part of a recipe.

    Attributes:
        temperature: T > 0, the softening of both models' logits.
        alpha: in [0, 1], the weight of the soft (teacher) term; 1 - alpha weighs the labels.
    """

    temperature: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        if not self.temperature > 0 or not np.isfinite(self.temperature):
            raise MinitorchError(f"the distillation temperature must be a positive number, "
                                 f"got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise MinitorchError(f"the distillation weight alpha must lie in [0, 1], "
                                 f"got {self.alpha}")


class SoftenedKL(Function):
    """T^2 * mean over the batch of KL(softmax(teacher / T) || softmax(student / T)).

    student (N, K) is differentiated; teacher (N, K) and temperature T are constants.
    """

    @staticmethod
    def forward(ctx: Context, student: np.ndarray, teacher: np.ndarray | None = None,
                temperature: float = 1.0) -> np.ndarray:
        teacher = np.asarray(teacher, dtype=student.dtype)
        if student.ndim != 2 or teacher.shape != student.shape:
            raise ValueError(f"distillation expects student and teacher logits of one shape "
                             f"(N, K), got {student.shape} and {teacher.shape}")
        log_p_student = log_softmax_array(student / temperature, axis=1)
        log_p_teacher = log_softmax_array(teacher / temperature, axis=1)
        p_teacher = np.exp(log_p_teacher)
        ctx.save_for_backward(log_p_student, p_teacher)
        ctx.temperature = temperature
        kl_per_image = (p_teacher * (log_p_teacher - log_p_student)).sum(axis=1)
        return np.asarray(temperature ** 2 * kl_per_image.mean(), dtype=student.dtype)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        log_p_student, p_teacher = ctx.saved_tensors
        n = log_p_student.shape[0]
        # d/dz of T^2 * mean KL = T^2 * (p_student - p_teacher) / T / N: the chain rule
        # through z / T takes one factor T back
        return (np.exp(log_p_student) - p_teacher) * (ctx.temperature * grad / n)


def softened_kl(student: Tensor, teacher: np.ndarray, temperature: float) -> Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), mean over the batch -> scalar.

    Args:
        student: (N, K) logits with a graph.
        teacher: (N, K) logits, a constant.
        temperature: T > 0.
    """
    return SoftenedKL.apply(student, teacher=np.asarray(teacher), temperature=temperature)


def distillation_loss(student: Tensor, teacher: np.ndarray, labels: np.ndarray,
                      config: DistillConfig) -> Tensor:
    """``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL(teacher_T || student_T)``.

    Args:
        student: (N, K) the student's logits.
        teacher: (N, K) the teacher's logits on the same images (a constant).
        labels: (N,) integer labels.
        config: T and alpha.

    Returns:
        The scalar loss; with alpha = 0 its value and gradient are the cross-entropy's.
    """
    hard = ops.cross_entropy(student, labels)
    soft = softened_kl(student, teacher, config.temperature)
    return (1.0 - config.alpha) * hard + config.alpha * soft


def teacher_logits(teacher: Module, images: np.ndarray) -> np.ndarray:
    """(N, K) the teacher's logits for `images` (N, 3, H, W): eval mode, no graph."""
    teacher.eval()
    with no_grad():
        return teacher(Tensor(images)).data


def model_fingerprint(model: Module) -> str:
    """A short SHA-256 of a model's parameter and buffer names and values: a run that resumes
    with another teacher is refused by comparing it."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]
