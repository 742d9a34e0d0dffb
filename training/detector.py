"""The digit detector: torchvision's SSD with a light backbone, and its export form.

The export form takes uint8 NHWC 320x320 images, normalises inside the graph, runs backbone and
head, decodes boxes against the fixed anchors, and (by default) runs ONNX NonMaxSuppression in
the graph, returning a fixed number of detections per image padded with zeros plus a count:
boxes [N, K, 4] (x1 y1 x2 y2 pixels of the 320x320 input), scores [N, K], classes [N, K] (digit
0..9) and count [N].
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD, SSDHead
from torchvision.ops import batched_nms

SIZE = 320
NUM_CLASSES = 11  # background + 10 digits
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DigitBackbone(nn.Module):
    """Feature maps at strides 8, 16, 32 and 64 (40, 20, 10, 5 cells for a 320 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_block(3, 16, 2), _block(16, 32, 2), _block(32, 32, 1))
        self.s8 = nn.Sequential(_block(32, 64, 2), _block(64, 64, 1))
        self.s16 = nn.Sequential(_block(64, 128, 2), _block(128, 128, 1))
        self.s32 = nn.Sequential(_block(128, 128, 2), _block(128, 128, 1))
        self.s64 = nn.Sequential(_block(128, 128, 2))
        self.out_channels = [64, 128, 128, 128]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        a = self.s8(self.stem(x))
        b = self.s16(a)
        c = self.s32(b)
        return OrderedDict([("0", a), ("1", b), ("2", c), ("3", self.s64(c))])


def build_ssd() -> SSD:
    backbone = DigitBackbone()
    # Digits are 20-90 px tall and often narrow: tall anchors (aspect 2 and 3) at every level.
    anchors = DefaultBoxGenerator([[2, 3]] * 4, scales=[0.06, 0.12, 0.2, 0.3, 0.42])
    head = SSDHead(backbone.out_channels, anchors.num_anchors_per_location(), NUM_CLASSES)
    return SSD(
        backbone,
        anchors,
        (SIZE, SIZE),
        NUM_CLASSES,
        image_mean=list(MEAN),
        image_std=list(STD),
        head=head,
        score_thresh=0.05,
        nms_thresh=0.45,
        detections_per_img=100,
        topk_candidates=200,
    )


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX NonMaxSuppression when exported; the same selection in eager PyTorch."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou: float, score_threshold: float):
        selected = []
        for n in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                candidates = torch.nonzero(scores[n, c] > score_threshold).flatten()
                keep = batched_nms(
                    boxes[n, candidates],
                    scores[n, c, candidates],
                    torch.zeros_like(candidates),
                    iou,
                )[:max_per_class]
                index = candidates[keep]
                selected.append(
                    torch.stack([torch.full_like(index, n), torch.full_like(index, c), index], 1)
                )
        return torch.cat(selected) if selected else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou: float, score_threshold: float):
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
            center_point_box_i=0,
        )


class DetectorExport(nn.Module):
    """uint8 NHWC images -> decoded, suppressed detections (see the module docstring)."""

    def __init__(
        self,
        ssd: SSD,
        max_detections: int = 100,
        iou: float = 0.45,
        score_threshold: float = 0.05,
        nms_in_graph: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = ssd.backbone
        self.head = ssd.head
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        dummy = torch.zeros(1, 3, SIZE, SIZE)
        features = list(ssd.backbone(dummy).values())
        self.register_buffer(
            "anchors", ssd.anchor_generator(ImageList(dummy, [(SIZE, SIZE)]), features)[0]
        )
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.max_detections = max_detections
        self.iou = iou
        self.score_threshold = score_threshold
        self.nms_in_graph = nms_in_graph

    def decoded(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All anchors' boxes [N, A, 4] and class scores [N, A, 10] (background dropped)."""
        x = image.to(torch.float32).permute(0, 3, 1, 2) / 255.0
        out = self.head(list(self.backbone((x - self.mean) / self.std).values()))
        n, a = out["bbox_regression"].shape[:2]
        boxes = (
            self.box_coder.decode_single(
                out["bbox_regression"].reshape(-1, 4), self.anchors.repeat(n, 1)
            )
            .reshape(n, a, 4)
            .clamp(0, SIZE)
        )
        scores = torch.softmax(out["cls_logits"], dim=-1)[..., 1:]
        return boxes, scores

    def forward(self, image: torch.Tensor):
        boxes, scores = self.decoded(image)
        if not self.nms_in_graph:
            return boxes, scores
        by_class = scores.transpose(1, 2)  # [N, C, A], as NonMaxSuppression wants
        selected = _NonMaxSuppression.apply(
            boxes, by_class, self.max_detections, self.iou, self.score_threshold
        )
        keep = torch.zeros_like(by_class)
        keep[selected[:, 0], selected[:, 1], selected[:, 2]] = 1.0
        kept = (by_class * keep).flatten(1)  # [N, C * A]
        top_scores, top_index = kept.topk(self.max_detections, dim=1)
        anchors = boxes.shape[1]
        classes = torch.div(top_index, anchors, rounding_mode="floor")
        box_index = top_index - classes * anchors
        top_boxes = torch.gather(boxes, 1, box_index.unsqueeze(-1).expand(-1, -1, 4))
        found = top_scores > 0
        top_boxes = top_boxes * found.unsqueeze(-1)
        return top_boxes, top_scores, classes * found, found.sum(1)
