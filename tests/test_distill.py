"""Knowledge distillation: the loss, its gradient, and the trainer with a teacher."""

from __future__ import annotations

import numpy as np
import pytest

from minitorch_compress import ops
from minitorch_compress.autograd import no_grad
from minitorch_compress.autograd.gradcheck import grad_check
from minitorch_compress.autograd.tensor import Tensor
from minitorch_compress.errors import MinitorchError
from minitorch_compress.models import resnet20
from minitorch_compress.training import DistillConfig, FinetuneConfig, Trainer
from minitorch_compress.training.distill import (
    distillation_loss,
    softened_kl,
    teacher_logits,
)

CONFIG = FinetuneConfig(epochs=2, batch_size=16, lr=0.05, seed=7, eval_batch_size=16)


def _random_logits(seed: int, n: int = 6, k: int = 5, scale: float = 3.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (n, k)), rng.normal(0, scale, (n, k)),
            rng.integers(0, k, n))


def _numpy_loss(student, teacher, labels, temperature, alpha):
    """The loss of Hinton et al. written out in NumPy, another way than the op computes it."""
    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    cross_entropy = -np.log(softmax(student)[np.arange(len(labels)), labels]).mean()
    p_teacher, p_student = softmax(teacher / temperature), softmax(student / temperature)
    kl = np.sum(p_teacher * np.log(p_teacher / p_student), axis=1).mean()
    return (1 - alpha) * cross_entropy + alpha * temperature ** 2 * kl


@pytest.mark.parametrize("temperature, alpha", [(4.0, 0.9), (1.0, 0.5), (2.5, 1.0)])
def test_the_loss_equals_its_numpy_formula(temperature, alpha):
    student, teacher, labels = _random_logits(0)
    loss = distillation_loss(Tensor(student), teacher, labels, DistillConfig(temperature, alpha))
    expected = _numpy_loss(student, teacher, labels, temperature, alpha)
    assert float(loss.data) == pytest.approx(expected, rel=1e-12)


def test_the_soft_term_is_zero_when_the_student_matches_the_teacher():
    _, teacher, _ = _random_logits(1)
    # softmax ignores a shift per row: the softened distributions are the same
    assert float(softened_kl(Tensor(teacher + 7.0), teacher, 4.0).data) == pytest.approx(
        0.0, abs=1e-12)
    assert float(softened_kl(Tensor(teacher[:, ::-1].copy()), teacher, 4.0).data) > 0


def test_alpha_zero_is_cross_entropy_bit_for_bit():
    student, teacher, labels = _random_logits(2)
    plain = Tensor(student.astype(np.float32), requires_grad=True)
    ops.cross_entropy(plain, labels).backward()
    mixed = Tensor(student.astype(np.float32), requires_grad=True)
    loss = distillation_loss(mixed, teacher, labels, DistillConfig(4.0, 0.0))
    loss.backward()
    assert loss.data == ops.cross_entropy(Tensor(student.astype(np.float32)), labels).data
    np.testing.assert_array_equal(mixed.grad, plain.grad)


@pytest.mark.parametrize("temperature, alpha", [(4.0, 0.9), (1.0, 0.3), (10.0, 1.0)])
def test_the_gradient_matches_finite_differences(temperature, alpha):
    student, teacher, labels = _random_logits(3)
    assert grad_check(lambda s: softened_kl(s, teacher, temperature), student)
    assert grad_check(
        lambda s: distillation_loss(s, teacher, labels, DistillConfig(temperature, alpha)),
        student)


@pytest.mark.parametrize("temperature, alpha", [(0.0, 0.5), (-1.0, 0.5), (float("nan"), 0.5),
                                                (4.0, -0.1), (4.0, 1.5)])
def test_bad_settings_are_one_line_errors(temperature, alpha):
    with pytest.raises(MinitorchError):
        DistillConfig(temperature, alpha)


def test_a_teacher_is_required_and_must_be_another_model(tiny_cifar):
    train, test = tiny_cifar
    model = resnet20(rng=np.random.default_rng(0))
    with pytest.raises(MinitorchError, match="without a teacher"):
        Trainer(model, train, test, CONFIG, distill=DistillConfig(), progress=False)
    with pytest.raises(MinitorchError, match="another model"):
        Trainer(model, train, test, CONFIG, teacher=model, progress=False)


def _teacher(seed: int = 5):
    """A random ResNet-20 with confident, varied logits (its classifier scaled up)."""
    teacher = resnet20(rng=np.random.default_rng(seed))
    teacher.final_fc.linear.weight.data *= 20.0
    return teacher.eval()


def test_with_alpha_zero_the_trainer_trains_as_without_a_teacher(tiny_cifar):
    train, test = tiny_cifar
    config = FinetuneConfig(epochs=1, batch_size=16, lr=0.05, seed=3, eval_batch_size=32)
    plain = Trainer(resnet20(rng=np.random.default_rng(0)), train, test, config,
                    progress=False)
    plain.fit()
    distilled = Trainer(resnet20(rng=np.random.default_rng(0)), train, test, config,
                        teacher=_teacher(), distill=DistillConfig(4.0, 0.0), progress=False)
    distilled.fit()
    for (name, a), (_, b) in zip(plain.model.state_dict().items(),
                                 distilled.model.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_distillation_moves_the_student_toward_the_teacher(tiny_cifar):
    train, test = tiny_cifar
    images = train[0][:32]
    teacher = _teacher()
    target = teacher_logits(teacher, images)
    student = resnet20(rng=np.random.default_rng(0))

    def kl_to_teacher() -> float:
        student.eval()
        with no_grad():
            return float(softened_kl(student(Tensor(images)), target, 4.0).data)

    before = kl_to_teacher()
    config = FinetuneConfig(epochs=2, batch_size=16, lr=0.02, seed=0, eval_batch_size=32)
    Trainer(student, train, test, config, teacher=teacher, distill=DistillConfig(4.0, 1.0),
            progress=False).fit()
    after = kl_to_teacher()
    assert after < 0.8 * before


def test_resume_with_distillation_matches_an_uninterrupted_run(tiny_cifar, tmp_path):
    from test_training import StopBeforeEpoch

    train, test = tiny_cifar
    settings = DistillConfig(temperature=3.0, alpha=0.7)

    def trainer(run: str, hooks=(), seed: int = 0, **distill) -> Trainer:
        return Trainer(resnet20(rng=np.random.default_rng(seed)), train, test, CONFIG,
                       hooks=hooks, run_dir=tmp_path / run, progress=False, **distill)

    straight = trainer("straight", teacher=_teacher(), distill=settings)
    straight.fit()
    with pytest.raises(KeyboardInterrupt):
        trainer("resumed", [StopBeforeEpoch(1)], teacher=_teacher(), distill=settings).fit()
    # a resume with other settings, another teacher or none at all is refused
    for other in ({"teacher": _teacher(), "distill": DistillConfig(3.0, 0.5)},
                  {"teacher": _teacher(seed=6), "distill": settings}, {}):
        with pytest.raises(MinitorchError, match="distillation settings"):
            trainer("resumed", **other).fit(resume=True)
    resumed = trainer("resumed", seed=99, teacher=_teacher(), distill=settings)
    resumed.fit(resume=True)
    assert resumed.epoch == 2
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert [h["train_loss"] for h in straight.history] == \
        [h["train_loss"] for h in resumed.history]
