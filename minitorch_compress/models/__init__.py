"""Models."""

from minitorch_compress.models.resnet import ResNet20, resnet20

__all__ = ["ResNet20", "resnet20"]
