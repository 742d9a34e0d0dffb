"""The two glue graphs of the read_number pipeline, built with onnx.helper so the same folder
loads in Triton (no Python step anywhere):

- `digit_crops`: the scene and the detector's boxes and scores in; the digits kept (boxes of
  score above SCORE_MIN that no higher-scoring box covers, as the detector's NMS is per class) and
  each cut out MNIST-style: a square around the box cropped with RoiAlign to 28x28, the ink
  picked from the background by colour (white on black whatever the scene's colours), the
  digit's larger side 20 px in the middle: one crop per digit kept, scene after scene, in
  one flat batch for the classifier (one blank crop when no scene has a digit: a batch is
  never empty).
- `number_order`: the classifier's logits and the kept boxes in; the digits ordered left to
  right, the number as text (BYTES), each digit's box and confidence (classifier probability
  times detector score) out.

Both take and give the batch as a plain first dimension (max_batch_size 0): the crops of N
scenes are as many rows as they hold digits, which a batching model's config cannot say.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CROPS, ORDER = "digit_crops", "number_order"
MAX_DIGITS = 8
"""K: the digits a scene may hold (the held-out numbers have 2 to 6)."""
CROP = 28
INNER = 20
"""MNIST's layout: the digit's larger side fills INNER of CROP pixels."""
SCORE_MIN = 0.08
"""Detections below this score are not digits. Chosen on house numbers of training digits
(0.05 to 0.2 tried: exact match 0.872 to 0.885, best here), never on the held-out ones."""
COVERED = 0.4
"""A box is dropped when a higher-scoring one covers this much of the smaller box's area."""
INK_LOW, INK_HIGH = 0.45, 0.95
"""Where a pixel lies between the background's colour (0) and the ink's (1) maps linearly to
black..white between these two: below INK_LOW is background, above INK_HIGH full ink."""
OPSET = 20  # StringConcat
_F = TensorProto.FLOAT


def _const(name: str, value, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _n(op: str, inputs: list[str], outputs: list[str], **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, **attrs)


def _corners(prefix: str, boxes: str, axis: int) -> list[onnx.NodeProto]:
    """x1, y1, x2, y2 of [..., 4] boxes as four [..., 1] tensors named prefix_x1 and so on."""
    return [
        _n("Split", [boxes, "four_ones"],
           [f"{prefix}_x1", f"{prefix}_y1", f"{prefix}_x2", f"{prefix}_y2"], axis=axis),
    ]  # fmt: skip


def crops_graph() -> onnx.ModelProto:
    nodes: list[onnx.NodeProto] = [
        # Boxes inside the scene whatever a caller sends: a huge box would make RoiAlign
        # average millions of samples per cell.
        _n("Shape", ["image"], ["image_shape"]),
        _n("Slice", ["image_shape", "one_i", "three_i"], ["hw_i"]),
        _n("Cast", ["hw_i"], ["hw"], to=_F),
        _n("Gather", ["hw", "whwh_at"], ["limits"], axis=0),  # [W, H, W, H]
        # K empty rows after the detections, so K can be picked however few a caller sends.
        _n("Shape", ["boxes"], ["boxes_shape"]),
        _n("Slice", ["boxes_shape", "zero_i", "one_i"], ["n"]),
        _n("Concat", ["n", "k", "four"], ["pad_boxes_shape"], axis=0),
        _n("ConstantOfShape", ["pad_boxes_shape"], ["pad_boxes"]),
        _n("Concat", ["boxes", "pad_boxes"], ["padded_boxes"], axis=1),
        _n("Concat", ["n", "k"], ["pad_scores_shape"], axis=0),
        _n("ConstantOfShape", ["pad_scores_shape"], ["pad_scores"]),
        _n("Concat", ["scores", "pad_scores"], ["padded_scores"], axis=1),
        _n("IsNaN", ["padded_boxes"], ["nan_box"]),
        _n("Where", ["nan_box", "zero", "padded_boxes"], ["real_boxes"]),
        _n("Max", ["real_boxes", "zero"], ["above_zero"]),
        _n("Min", ["above_zero", "limits"], ["inside_boxes"]),
    ]
    # Which detections are digits: score high enough, not covered by a better box.
    nodes += _corners("b", "inside_boxes", 2)  # each [N, 100, 1]
    for corner in ("x1", "y1", "x2", "y2"):
        nodes.append(_n("Transpose", [f"b_{corner}"], [f"t_{corner}"], perm=[0, 2, 1]))
    nodes += [
        _n("Max", ["b_x1", "t_x1"], ["ix1"]),
        _n("Max", ["b_y1", "t_y1"], ["iy1"]),
        _n("Min", ["b_x2", "t_x2"], ["ix2"]),
        _n("Min", ["b_y2", "t_y2"], ["iy2"]),
        _n("Sub", ["ix2", "ix1"], ["iw_raw"]),
        _n("Sub", ["iy2", "iy1"], ["ih_raw"]),
        _n("Relu", ["iw_raw"], ["iw"]),
        _n("Relu", ["ih_raw"], ["ih"]),
        _n("Mul", ["iw", "ih"], ["inter"]),  # [N, 100, 100]
        _n("Sub", ["b_x2", "b_x1"], ["bw"]),
        _n("Sub", ["b_y2", "b_y1"], ["bh"]),
        _n("Mul", ["bw", "bh"], ["area"]),  # [N, 100, 1]
        _n("Transpose", ["area"], ["area_t"], perm=[0, 2, 1]),
        _n("Min", ["area", "area_t"], ["smaller"]),
        _n("Max", ["smaller", "tiny"], ["safe_smaller"]),
        _n("Div", ["inter", "safe_smaller"], ["cover"]),
        _n("Greater", ["cover", "covered"], ["overlaps"]),
        _n("Unsqueeze", ["padded_scores", "axis2"], ["s_col"]),  # [N, 100, 1]: box i
        _n("Unsqueeze", ["padded_scores", "axis1"], ["s_row"]),  # [N, 1, 100]: box j
        _n("Greater", ["s_row", "s_col"], ["better"]),  # j scores above i
        _n("Greater", ["s_row", "score_min"], ["j_counts"]),
        _n("And", ["overlaps", "better"], ["o_b"]),
        _n("And", ["o_b", "j_counts"], ["covers_i"]),
        _n("Cast", ["covers_i"], ["covers_f"], to=_F),
        _n("ReduceMax", ["covers_f", "axis2"], ["dropped"], keepdims=0),  # [N, 100]
        _n("Greater", ["padded_scores", "score_min"], ["high"]),
        _n("Less", ["dropped", "half"], ["kept_box"]),
        _n("And", ["high", "kept_box"], ["digit"]),
        _n("Where", ["digit", "padded_scores", "minus_one"], ["rank_score"]),
        _n("TopK", ["rank_score", "k"], ["top_score", "top"], axis=1),  # [N, K]
        _n("Greater", ["top_score", "zero"], ["chosen"]),
        _n("Cast", ["chosen"], ["chosen_f"], to=_F),
        _n("Where", ["chosen", "top_score", "zero"], ["digit_scores"]),
        _n("Unsqueeze", ["top", "axis2"], ["top_col"]),
        _n("Shape", ["top"], ["nk"]),
        _n("Concat", ["nk", "four"], ["nk4"], axis=0),
        _n("Expand", ["top_col", "nk4"], ["top4"]),
        _n("GatherElements", ["inside_boxes", "top4"], ["picked"], axis=1),
        _n("Unsqueeze", ["chosen_f", "axis2"], ["chosen_col"]),
        _n("Mul", ["picked", "chosen_col"], ["digit_boxes"]),  # [N, K, 4]
        # One crop per digit kept, scene by scene (the classifier's work follows the digits,
        # not K); a picture of no digit at all still gives one row, as a batch is never empty.
        _n("Reshape", ["digit_boxes", "flat4"], ["all_boxes"]),  # [N*K, 4]
        _n("Squeeze", ["n"], ["n_scalar"]),
        _n("Range", ["zero_s", "n_scalar", "one_s"], ["scene"]),
        _n("Unsqueeze", ["scene", "axis1"], ["scene_col"]),
        _n("Expand", ["scene_col", "nk"], ["scene_nk"]),
        _n("Reshape", ["scene_nk", "flat"], ["all_scenes"]),
        _n("Reshape", ["chosen", "flat"], ["chosen_flat"]),
        _n("NonZero", ["chosen_flat"], ["kept_2d"]),
        _n("Squeeze", ["kept_2d", "zero_i"], ["kept_at"]),  # [R]
        _n("Shape", ["kept_at"], ["kept_n"]),
        _n("Min", ["kept_n", "one_i"], ["any_kept"]),
        _n("Sub", ["one_i", "any_kept"], ["none_kept"]),
        _n("Slice", ["zero_i", "zero_i", "none_kept"], ["fallback"]),
        _n("Concat", ["kept_at", "fallback"], ["rows"], axis=0),
        _n("Gather", ["all_boxes", "rows"], ["rois_box"], axis=0),  # [R, 4]
        _n("Gather", ["all_scenes", "rows"], ["scene_of_crop"], axis=0),
        # A caller's boxes for more scenes than images sent crop the last image, never memory
        # past the images.
        _n("Slice", ["image_shape", "zero_i", "one_i"], ["images_n"]),
        _n("Sub", ["images_n", "one_i"], ["last_image"]),
        _n("Min", ["scene_of_crop", "last_image"], ["batch_indices"]),
    ]
    # The square each crop covers: centred on the box, its larger side INNER/CROP of it.
    nodes += _corners("r", "rois_box", 1)  # each [R, 1]
    nodes += [
        _n("Add", ["r_x1", "r_x2"], ["cx2"]),
        _n("Mul", ["cx2", "half"], ["cx"]),
        _n("Add", ["r_y1", "r_y2"], ["cy2"]),
        _n("Mul", ["cy2", "half"], ["cy"]),
        _n("Sub", ["r_x2", "r_x1"], ["rw"]),
        _n("Sub", ["r_y2", "r_y1"], ["rh"]),
        _n("Max", ["rw", "rh"], ["longer"]),
        _n("Max", ["longer", "one"], ["safe_longer"]),
        _n("Mul", ["safe_longer", "widen"], ["side"]),
        _n("Mul", ["side", "half"], ["half_side"]),
        _n("Sub", ["cx", "half_side"], ["sx1"]),
        _n("Sub", ["cy", "half_side"], ["sy1"]),
        _n("Add", ["cx", "half_side"], ["sx2"]),
        _n("Add", ["cy", "half_side"], ["sy2"]),
        _n("Concat", ["sx1", "sy1", "sx2", "sy2"], ["rois"], axis=1),
        _n("Transpose", ["image"], ["chw"], perm=[0, 3, 1, 2]),
        _n("Cast", ["chw"], ["pixels"], to=_F),
        _n(
            "RoiAlign",
            ["pixels", "rois", "batch_indices"],
            ["patch"],  # [R, 3, 28, 28]
            output_height=CROP,
            output_width=CROP,
            sampling_ratio=0,  # as many samples per cell as scene pixels: an area average
            mode="avg",
            coordinate_transformation_mode="half_pixel",
        ),
        # Each cell's centre in scene pixels, and masks: `near` is the box grown by a cell,
        # `frame` the ring of cells on its edge (background, but for where ink touches it).
        _n("Div", ["side", "cells"], ["cell"]),  # [R, 1]
        _n("Mul", ["cell", "centres"], ["offsets"]),  # [R, 28]
        _n("Add", ["sx1", "offsets"], ["xs"]),
        _n("Add", ["sy1", "offsets"], ["ys"]),
    ]
    for axis, (low, high) in {"x": ("r_x1", "r_x2"), "y": ("r_y1", "r_y2")}.items():
        nodes += [
            _n("Sub", [low, "cell"], [f"{axis}_lo_out"]),
            _n("Add", [high, "cell"], [f"{axis}_hi_out"]),
            _n("Add", [low, "cell"], [f"{axis}_lo_in"]),
            _n("Sub", [high, "cell"], [f"{axis}_hi_in"]),
            _n("GreaterOrEqual", [f"{axis}s", f"{axis}_lo_out"], [f"{axis}_a"]),
            _n("LessOrEqual", [f"{axis}s", f"{axis}_hi_out"], [f"{axis}_b"]),
            _n("And", [f"{axis}_a", f"{axis}_b"], [f"{axis}_near_b"]),
            _n("Cast", [f"{axis}_near_b"], [f"{axis}_near"], to=_F),
            _n("GreaterOrEqual", [f"{axis}s", f"{axis}_lo_in"], [f"{axis}_c"]),
            _n("LessOrEqual", [f"{axis}s", f"{axis}_hi_in"], [f"{axis}_d"]),
            _n("And", [f"{axis}_c", f"{axis}_d"], [f"{axis}_in_b"]),
            _n("Cast", [f"{axis}_in_b"], [f"{axis}_in"], to=_F),
        ]
    nodes += [
        _n("Unsqueeze", ["y_near", "axis2"], ["y_near_col"]),  # [R, 28, 1]
        _n("Unsqueeze", ["x_near", "axis1"], ["x_near_row"]),  # [R, 1, 28]
        _n("Mul", ["y_near_col", "x_near_row"], ["near"]),  # [R, 28, 28]
        _n("Unsqueeze", ["y_in", "axis2"], ["y_in_col"]),
        _n("Unsqueeze", ["x_in", "axis1"], ["x_in_row"]),
        _n("Mul", ["y_in_col", "x_in_row"], ["inside"]),
        _n("Sub", ["near", "inside"], ["frame"]),
        _n("Unsqueeze", ["frame", "axis1"], ["frame_c"]),  # [R, 1, 28, 28]
        _n("ReduceSum", ["frame", "axes12"], ["frame_cells"], keepdims=1),  # [R, 1, 1]
        _n("Max", ["frame_cells", "one"], ["safe_frame_cells"]),
        _n("Unsqueeze", ["safe_frame_cells", "axis1"], ["safe_frame_cells_c"]),
        _n("Mul", ["patch", "frame_c"], ["framed"]),
        _n("ReduceSum", ["framed", "axes23"], ["frame_sum"], keepdims=1),  # [R, 3, 1, 1]
        _n("Div", ["frame_sum", "safe_frame_cells_c"], ["background"]),
        _n("Sub", ["patch", "background"], ["away"]),  # [R, 3, 28, 28]
        _n("Mul", ["away", "away"], ["away2"]),
        _n("ReduceSum", ["away2", "axis1"], ["far2"], keepdims=0),  # [R, 28, 28]
        _n("Mul", ["far2", "near"], ["far_near"]),
        # The ink's colour: the mean of the 8 cells farthest from the background.
        _n("Reshape", ["far_near", "flat_cells"], ["far_flat"]),  # [R, 784]
        _n("TopK", ["far_flat", "eight"], ["_far_top", "far_at"], axis=1),  # [R, 8]
        _n("Reshape", ["patch", "flat_cells3"], ["patch_flat"]),  # [R, 3, 784]
        _n("Unsqueeze", ["far_at", "axis1"], ["far_at_c"]),  # [R, 1, 8]
        _n("Shape", ["far_at_c"], ["r18"]),
        _n("Mul", ["r18", "three_in_1"], ["r38"]),
        _n("Expand", ["far_at_c", "r38"], ["far_at_3"]),
        _n("GatherElements", ["patch_flat", "far_at_3"], ["ink_cells"], axis=2),
        _n("ReduceMean", ["ink_cells", "axis2"], ["ink"], keepdims=1),  # [R, 3, 1]
        _n("Unsqueeze", ["ink", "axis3"], ["ink_c"]),  # [R, 3, 1, 1]
        _n("Sub", ["ink_c", "background"], ["to_ink"]),
        _n("Mul", ["away", "to_ink"], ["along"]),
        _n("ReduceSum", ["along", "axis1"], ["dot"], keepdims=0),  # [R, 28, 28]
        _n("Mul", ["to_ink", "to_ink"], ["to_ink2"]),
        _n("ReduceSum", ["to_ink2", "axis1"], ["ink_far2"], keepdims=0),  # [R, 1, 1]
        _n("Max", ["ink_far2", "one"], ["safe_ink_far2"]),
        _n("Div", ["dot", "safe_ink_far2"], ["inkness"]),
        _n("Sub", ["inkness", "ink_low"], ["above"]),
        _n("Mul", ["above", "ink_scale"], ["scaled"]),
        _n("Clip", ["scaled", "zero", "full"], ["clipped"]),
        _n("Mul", ["clipped", "near"], ["digit_ink"]),
        _n("Unsqueeze", ["digit_ink", "axis3"], ["digit_ink_c"]),
        _n("Cast", ["digit_ink_c"], ["crops"], to=TensorProto.UINT8),  # [R, 28, 28, 1]
    ]
    centres = (np.arange(CROP, dtype=np.float32) + 0.5)[None, :]
    initializers = [
        _const("four_ones", [1, 1, 1, 1], np.int64),
        _const("tiny", 1e-6),
        _const("covered", COVERED),
        _const("score_min", SCORE_MIN),
        _const("half", 0.5),
        _const("minus_one", -1.0),
        _const("zero", 0.0),
        _const("one", 1.0),
        _const("full", 255.0),
        _const("k", [MAX_DIGITS], np.int64),
        _const("eight", [8], np.int64),
        _const("four", [4], np.int64),
        _const("three_in_1", [1, 3, 1], np.int64),
        _const("axis1", [1], np.int64),
        _const("axis2", [2], np.int64),
        _const("axis3", [3], np.int64),
        _const("axes12", [1, 2], np.int64),
        _const("axes23", [2, 3], np.int64),
        _const("flat", [-1], np.int64),
        _const("flat4", [-1, 4], np.int64),
        _const("flat_cells", [-1, CROP * CROP], np.int64),
        _const("flat_cells3", [-1, 3, CROP * CROP], np.int64),
        _const("zero_i", [0], np.int64),
        _const("three_i", [3], np.int64),
        _const("whwh_at", [1, 0, 1, 0], np.int64),
        _const("one_i", [1], np.int64),
        _const("zero_s", 0, np.int64),
        _const("one_s", 1, np.int64),
        _const("widen", CROP / INNER),
        _const("cells", float(CROP)),
        _const("centres", centres),
        _const("ink_low", INK_LOW),
        _const("ink_scale", 255.0 / (INK_HIGH - INK_LOW)),
    ]
    graph = helper.make_graph(
        nodes,
        CROPS,
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, ["n", None, None, 3]),
            helper.make_tensor_value_info("boxes", _F, ["n", "detections", 4]),
            helper.make_tensor_value_info("scores", _F, ["n", "detections"]),
        ],
        [
            helper.make_tensor_value_info("crops", TensorProto.UINT8, ["r", CROP, CROP, 1]),
            helper.make_tensor_value_info("digit_boxes", _F, ["n", MAX_DIGITS, 4]),
            helper.make_tensor_value_info("digit_scores", _F, ["n", MAX_DIGITS]),
        ],
        initializer=initializers,
    )
    return _model(graph)


def order_graph() -> onnx.ModelProto:
    nodes = [
        # Crop r is the r-th digit kept, scene by scene: slot (n, k) reads row
        # (digits kept up to and including it) - 1.
        _n("Greater", ["digit_scores", "zero"], ["kept"]),
        _n("Reshape", ["kept", "flat"], ["kept_flat"]),
        _n("Cast", ["kept_flat"], ["kept_i"], to=TensorProto.INT64),
        _n("CumSum", ["kept_i", "zero_s"], ["kept_so_far"]),
        _n("Sub", ["kept_so_far", "one_s"], ["row_raw"]),
        _n("Max", ["row_raw", "zero_s"], ["row"]),
        _n("Gather", ["logits", "row"], ["slot_logits"], axis=0),  # [N*K, 10]
        _n("Softmax", ["slot_logits"], ["probs_flat"], axis=1),
        _n("Reshape", ["probs_flat", "nk10"], ["probs"]),  # [N, K, 10]
        _n("ArgMax", ["probs"], ["digit"], axis=2, keepdims=0),  # [N, K]
        _n("ReduceMax", ["probs", "axis2"], ["prob"], keepdims=0),
        _n("Greater", ["digit_scores", "zero"], ["chosen"]),
        _n("Split", ["digit_boxes", "four_ones"], ["x1", "_y1", "x2", "_y2"], axis=2),
        _n("Add", ["x1", "x2"], ["cx2"]),
        _n("Squeeze", ["cx2", "axis2"], ["cx"]),
        _n("Where", ["chosen", "cx", "far_right"], ["key"]),
        _n("TopK", ["key", "k"], ["_key", "order"], axis=1, largest=0, sorted=1),
        _n("GatherElements", ["digit", "order"], ["digit_o"], axis=1),
        _n("GatherElements", ["chosen", "order"], ["chosen_o"], axis=1),
        _n("GatherElements", ["prob", "order"], ["prob_o"], axis=1),
        _n("GatherElements", ["digit_scores", "order"], ["score_o"], axis=1),
        _n("Mul", ["prob_o", "score_o"], ["confidences"]),
        _n("Unsqueeze", ["order", "axis2"], ["order_col"]),
        _n("Shape", ["order"], ["nk"]),
        _n("Concat", ["nk", "four"], ["nk4"], axis=0),
        _n("Expand", ["order_col", "nk4"], ["order4"]),
        _n("GatherElements", ["digit_boxes", "order4"], ["boxes"], axis=1),
        _n("Cast", ["chosen_o"], ["chosen_i"], to=TensorProto.INT64),
        _n("ReduceSum", ["chosen_i", "axis1"], ["count"], keepdims=0),  # [N]
        _n("Where", ["chosen_o", "digit_o", "minus_one_i"], ["digits"]),
        _n("Gather", ["characters", "digit_o"], ["chars"]),
        _n("Where", ["chosen_o", "chars", "empty"], ["shown"]),  # [N, K]
        _n("Split", ["shown", "k_ones"], [f"c{i}" for i in range(MAX_DIGITS)], axis=1),
    ]
    text = "c0"
    for i in range(1, MAX_DIGITS):
        nodes.append(_n("StringConcat", [text, f"c{i}"], [f"t{i}"]))
        text = f"t{i}"
    nodes.append(_n("Squeeze", [text, "axis1"], ["number"]))
    initializers = [
        _const("nk10", [-1, MAX_DIGITS, 10], np.int64),
        _const("flat", [-1], np.int64),
        _const("zero_s", 0, np.int64),
        _const("one_s", 1, np.int64),
        _const("zero", 0.0),
        _const("four_ones", [1, 1, 1, 1], np.int64),
        _const("k_ones", [1] * MAX_DIGITS, np.int64),
        _const("axis1", [1], np.int64),
        _const("axis2", [2], np.int64),
        _const("far_right", 1e9),
        _const("k", [MAX_DIGITS], np.int64),
        _const("four", [4], np.int64),
        _const("minus_one_i", -1, np.int64),
        numpy_helper.from_array(
            np.array([str(d).encode() for d in range(10)], object), "characters"
        ),
        numpy_helper.from_array(np.array([b""], object), "empty"),
    ]
    graph = helper.make_graph(
        nodes,
        ORDER,
        [
            helper.make_tensor_value_info("logits", _F, ["r", 10]),
            helper.make_tensor_value_info("digit_boxes", _F, ["n", MAX_DIGITS, 4]),
            helper.make_tensor_value_info("digit_scores", _F, ["n", MAX_DIGITS]),
        ],
        [
            helper.make_tensor_value_info("number", TensorProto.STRING, ["n"]),
            helper.make_tensor_value_info("digits", TensorProto.INT64, ["n", MAX_DIGITS]),
            helper.make_tensor_value_info("boxes", _F, ["n", MAX_DIGITS, 4]),
            helper.make_tensor_value_info("confidences", _F, ["n", MAX_DIGITS]),
            helper.make_tensor_value_info("count", TensorProto.INT64, ["n"]),
        ],
        initializer=initializers,
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="deepserve"
    )
    onnx.checker.check_model(model, full_check=True)
    return model
