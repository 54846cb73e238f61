"""LeNet-5, as the lecture decks teach it.

LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition",
Proc. IEEE 1998, Fig. 2. The decks' version (also the textbook's) pads the 28x28 MNIST input by 2 so
that C1 sees the paper's 32x32 field, uses sigmoid and average pooling for the paper's squashing
function and sub-sampling, and a plain fully connected C5/F6/output in place of the paper's partial
C3 connection table and RBF output layer.
"""

from __future__ import annotations

from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..registry import register_model


def _spatial_after_features(image_size: int) -> int:
    # C1 (5x5, pad 2) keeps the size; S2 halves it; C3 (5x5, no pad) takes 4 off; S4 halves it.
    return ((image_size // 2) - 4) // 2


class LeNet5(Backbone):
    """LeNet-5: C1 6@5x5 -> S2 -> C3 16@5x5 -> S4 -> F5 120 -> F6 84 -> output."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, modern: bool = False):
        super().__init__()
        side = _spatial_after_features(image_size)
        if side < 1:
            raise ValueError(f"LeNet-5 needs images of at least 12x12 pixels, got {image_size}x{image_size}")
        act = nn.ReLU if modern else nn.Sigmoid
        pool = nn.MaxPool2d if modern else nn.AvgPool2d
        norm = (lambda c: nn.BatchNorm2d(c)) if modern else (lambda c: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),  # C1: N x 6 x 28 x 28
            norm(6),
            act(),
            pool(kernel_size=2, stride=2),  # S2: N x 6 x 14 x 14
            nn.Conv2d(6, 16, kernel_size=5),  # C3: N x 16 x 10 x 10
            norm(16),
            act(),
            pool(kernel_size=2, stride=2),  # S4: N x 16 x 5 x 5
        )
        hidden = [nn.Linear(16 * side * side, 120), act(), nn.Linear(120, 84), act()]  # F5, F6
        if modern:
            hidden = [hidden[0], nn.BatchNorm1d(120), act(), hidden[2], nn.BatchNorm1d(84), act()]
        self.classifier = nn.Sequential(nn.Flatten(), *hidden, nn.Linear(84, num_classes))
        # C1's activation (28x28), C3's (10x10, still on S2's grid), S4 (5x5).
        self.feature_info = [FeatureInfo("features.2", 6, 1), FeatureInfo("features.6", 16, 2),
                             FeatureInfo("features.7", 16, 4)]


@register_model(
    "lenet5", family="LeNet", paper="LeCun et al., Proc. IEEE 1998", year=1998, input_size=(1, 28, 28),
    num_classes=10,
)
def lenet5(*, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, small_input: bool = True) -> LeNet5:
    """LeNet-5 as in the decks: sigmoid activations and average pooling (``small_input`` is its only form)."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


@register_model(
    "lenet5_modern", family="LeNet", paper="LeCun et al., Proc. IEEE 1998 (+ ReLU, max-pool, batch norm)",
    year=1998, input_size=(1, 28, 28), num_classes=10,
)
def lenet5_modern(*, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, small_input: bool = True) -> LeNet5:
    """LeNet-5 with ReLU, max-pooling and batch normalisation (``small_input`` is its only form)."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, image_size=image_size, modern=True)
