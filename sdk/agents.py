"""Policies: an observation in, the action to take out (a reinforcement-learning agent served).

>>> client.act([0.01, -0.02, 0.03, 0.04]).label
'right'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _calls
from ._calls import Call
from .errors import DeepserveError

POLICY = "cartpole_policy"
OBSERVATION, ACTION, VALUES = "observation", "action", "action_values"
LABELS = ("left", "right")


@dataclass(frozen=True, eq=False)
class Action:
    """The action a policy chose for one observation, and its preference for each action
    (compared by identity: `values` is an array)."""

    action: int
    values: np.ndarray

    @property
    def label(self) -> str:
        return LABELS[self.action] if self.action < len(LABELS) else str(self.action)


def observations(observation: Sequence[float] | np.ndarray) -> tuple[np.ndarray, bool]:
    """FP32 [N, D] and whether one observation was given (a flat [D])."""
    array = np.asarray(observation, dtype=np.float32)
    if array.ndim == 1:
        return array[None], True
    if array.ndim != 2:
        raise DeepserveError(
            f"an observation is a flat list of numbers, or [N, D] for several; got shape "
            f"{list(array.shape)}"
        )
    return array, False


def act_call(
    model: str, observation: Sequence[float] | np.ndarray, version: str
) -> tuple[Call, bool]:
    batch, single = observations(observation)
    return _calls.infer(model, {OBSERVATION: batch}, [ACTION, VALUES], version), single


def actions(outputs: dict[str, np.ndarray], single: bool) -> Action | list[Action]:
    chosen = [
        Action(int(a), v) for a, v in zip(outputs[ACTION].reshape(-1), outputs[VALUES], strict=True)
    ]
    return chosen[0] if single else chosen
