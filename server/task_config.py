"""The task facts of a model, read from its config's `parameters` (written by the exporters):
what it does, the image size and channels it takes, how to resize, and defaults."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TaskNotSupported
from .model import ModelVersion

TASKS = ("classification", "detection", "segmentation")
RESIZE_MODES = ("stretch",)


@dataclass(frozen=True)
class TaskSpec:
    task: str
    input_name: str
    height: int
    width: int
    channels: int
    resize_mode: str
    parameters: dict[str, str]

    def number(self, key: str, default: float) -> float:
        value = self.parameters.get(key)
        return float(value) if value not in (None, "") else default


def task_spec(model: ModelVersion, wanted: str) -> TaskSpec:
    """The model's task facts, checked to be complete and to be the task `wanted`."""
    params = {k: v.string_value for k, v in model.config.parameters.items()}
    task = params.get("task", "")
    if not task:
        raise TaskNotSupported(
            f"model '{model.name}' has no 'task' parameter in its config, so the Vision API "
            "cannot pre/post-process for it; call it through ModelInfer, or export it with "
            "deepserve's training scripts"
        )
    if task != wanted:
        raise TaskNotSupported(f"model '{model.name}' does {task}, not {wanted}")
    missing = [k for k in ("image_height", "image_width", "image_channels") if not params.get(k)]
    if missing:
        raise TaskNotSupported(f"model '{model.name}' config lacks parameters {missing}")
    resize = params.get("resize_mode", "stretch")
    if resize not in RESIZE_MODES:
        raise TaskNotSupported(
            f"model '{model.name}': resize_mode '{resize}' is not one of {RESIZE_MODES}"
        )
    if len(model.inputs) != 1:
        raise TaskNotSupported(
            f"model '{model.name}' has {len(model.inputs)} inputs; image tasks need one"
        )
    (input_name,) = model.inputs
    return TaskSpec(
        task=task,
        input_name=input_name,
        height=int(params["image_height"]),
        width=int(params["image_width"]),
        channels=int(params["image_channels"]),
        resize_mode=resize,
        parameters=params,
    )
