"""The bundled CartPole policy served: an agent driven through the server, one call a step,
balances the pole for the whole episode; tritonclient gets the actions ONNX Runtime gives in
process; observations that are not numbers are refused, naming the element."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from deepserve import Action, AsyncClient, Client, InvalidInputError

from ..server_process import RunningServer

MODEL = Path(__file__).resolve().parents[2] / "models" / "cartpole_policy"
HELD_OUT_SEEDS = range(100_000, 100_005)


def _episode(act, seed: int) -> float:  # type: ignore[no-untyped-def]
    env = gym.make("CartPole-v1")
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(act(observation))
        total += float(reward)
        done = terminated or truncated
    env.close()
    return total


def test_the_served_policy_balances_the_pole_for_whole_episodes(
    bundled_server: RunningServer,
) -> None:
    with Client(bundled_server.url) as client:
        returns = [_episode(lambda o: client.act(o).action, seed) for seed in HELD_OUT_SEEDS]
    assert returns == [500.0] * len(HELD_OUT_SEEDS)  # the most an episode gives


def test_tritonclient_gets_the_actions_of_the_graph_run_in_process(
    bundled_server: RunningServer,
) -> None:
    observations = np.random.default_rng(3).normal(0, 0.5, (16, 4)).astype(np.float32)
    session = ort.InferenceSession(str(MODEL / "1" / "model.onnx"))
    values = session.run(["action_values"], {"observation": observations})[0]
    client = triton.InferenceServerClient(bundled_server.url)
    given = triton.InferInput("observation", [16, 4], "FP32")
    given.set_data_from_numpy(observations)
    result = client.infer("cartpole_policy", [given])
    np.testing.assert_allclose(result.as_numpy("action_values"), values, atol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("action")[:, 0], values.argmax(1))


def test_the_sdk_acts_on_one_observation_or_several(bundled_server: RunningServer) -> None:
    observations = np.array([[0, 0, 0.1, 0.5], [0, 0, -0.1, -0.5]], np.float32)
    with Client(bundled_server.url) as client:
        one = client.act(observations[0].tolist())
        both = client.act(observations)
    assert isinstance(one, Action) and one.values.shape == (2,)
    assert [a.label for a in both] == ["right", "left"]  # push under the falling pole
    assert one.action == both[0].action
    np.testing.assert_allclose(one.values, both[0].values)

    async def together() -> list[int]:
        async with AsyncClient(bundled_server.url) as client:
            chosen = await asyncio.gather(*(client.act(o) for o in observations))
        return [a.action for a in chosen]  # type: ignore[union-attr]

    assert asyncio.run(together()) == [1, 0]


@pytest.mark.parametrize(
    ("value", "shown"), [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")]
)
def test_observations_that_are_not_numbers_are_refused(
    bundled_server: RunningServer, value: float, shown: str
) -> None:
    with Client(bundled_server.url) as client:
        with pytest.raises(InvalidInputError) as refused:
            client.act([[0.0, 0.1, 0.2, 0.3], [0.0, 0.1, value, 0.3]])
        assert client.act([0.0, 0.0, 0.1, 0.5]).label == "right"  # still serving
    message = str(refused.value)
    assert f"input 'observation': element [1, 2] is {shown}" in message
    assert "finite numbers only" in message


def test_a_wrong_shape_names_the_tensor(bundled_server: RunningServer) -> None:
    client = triton.InferenceServerClient(bundled_server.url)
    given = triton.InferInput("observation", [1, 3], "FP32")
    given.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("cartpole_policy", [given])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'observation': expected shape [-1, 4], got [1, 3]" in refused.value.message()
