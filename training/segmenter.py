"""The digit segmenter: torchvision's LR-ASPP head on a MobileNetV3-Small backbone.

The head's low-level branch reads stride-4 features (torchvision's stock LR-ASPP reads stride 8)
because digit strokes are 2-10 px wide. The export form takes uint8 NHWC images of any size,
normalises inside the graph and returns the argmax class mask as uint8 [N, H, W]: 0 background,
1 + d for digit d.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import mobilenet_v3_small
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.lraspp import LRASPP

from .held_out import SEGMENTATION_CLASSES

NUM_CLASSES = SEGMENTATION_CLASSES
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
# Background covers ~95 % of pixels: the loss weighs it down so strokes are not drowned out.
CLASS_WEIGHTS = (0.3,) + (1.0,) * (NUM_CLASSES - 1)


def build_lraspp() -> LRASPP:
    features = mobilenet_v3_small(weights=None, dilated=True).features
    # Stride-4 block for the low branch, the last block (stride 16, dilated) for the high one.
    low, high = "1", str(len(features) - 1)
    backbone = IntermediateLayerGetter(features, return_layers={low: "low", high: "high"})
    return LRASPP(
        backbone,
        low_channels=features[int(low)].out_channels,
        high_channels=features[int(high)].out_channels,
        num_classes=NUM_CLASSES,
        inter_channels=128,
    )


class SegmenterExport(nn.Module):
    """uint8 [N, H, W, 3] -> uint8 class mask [N, H, W]."""

    def __init__(self, model: LRASPP) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        # A weighted loss learns scores shifted by log(weight); taking it back out before the
        # argmax gives the unweighted decision (otherwise strokes come out ~10 % too fat).
        prior = -torch.log(torch.tensor(CLASS_WEIGHTS)).view(1, NUM_CLASSES, 1, 1)
        self.register_buffer("prior", prior)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32).permute(0, 3, 1, 2) / 255.0
        return self.model((x - self.mean) / self.std)["out"]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (self.logits(image) + self.prior).argmax(1).to(torch.uint8)


def normalised(images: torch.Tensor) -> torch.Tensor:
    """float [N, 3, H, W] in [0, 1] -> the model's input."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def loss_fn(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    weight = torch.tensor(CLASS_WEIGHTS, device=logits.device)
    return F.cross_entropy(logits, masks, weight=weight)
