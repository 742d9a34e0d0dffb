"""The Vision API's tasks, one class per file of this package: every Task subclass found
here is in TASKS, so a new task is its file (and its messages in vision.proto). `for_model`
parses a model's task parameters once, when it loads."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence

from ..protocol.errors import TaskNotSupported
from .base import RESIZE_MODES, ImageInput, Task


def _discover() -> dict[str, type[Task]]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return {task.name: task for task in Task.__subclasses__()}


TASKS: dict[str, type[Task]] = _discover()
"""By the config's `task` parameter, in the order of their files."""

__all__ = ["TASKS", "Task", "TaskNotSupported", "for_model"]


def for_model(
    model: str,
    parameters: Mapping[str, str],
    input_names: Sequence[str],
    output_names: Sequence[str],
    labels: Mapping[str, list[str]],
) -> Task | TaskNotSupported:
    """The model's task, or why it has none (raised when a Vision call reaches the model)."""
    name = parameters.get("task", "")
    if not name:
        return TaskNotSupported(
            f"model '{model}' has no 'task' parameter in its config, so the Vision API cannot "
            "pre/post-process for it; call it through ModelInfer, or export it with deepserve's "
            "training scripts"
        )
    if name not in TASKS:
        return TaskNotSupported(f"model '{model}': task '{name}' is not one of {sorted(TASKS)}")
    missing = [
        k for k in ("image_height", "image_width", "image_channels") if not parameters.get(k)
    ]
    if missing:
        return TaskNotSupported(f"model '{model}' config lacks parameters {missing}")
    resize = parameters.get("resize_mode", "stretch")
    if resize not in RESIZE_MODES:
        return TaskNotSupported(
            f"model '{model}': resize_mode '{resize}' is not one of {RESIZE_MODES}"
        )
    if len(input_names) != 1:
        return TaskNotSupported(
            f"model '{model}' has {len(input_names)} inputs; image tasks need one"
        )
    try:
        size = [int(parameters[k]) for k in ("image_height", "image_width", "image_channels")]
        image = ImageInput(input_names[0], *size)
        return TASKS[name](model, image, parameters, list(output_names), labels)
    except ValueError:
        return TaskNotSupported(
            f"model '{model}': image_height / width / channels must be integers"
        )
    except TaskNotSupported as problem:
        return problem
