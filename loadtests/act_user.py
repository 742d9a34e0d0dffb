"""The Locust user for a policy: a CartPole episode played through the server, each step one
request (reported as "Act <model>"), and the whole episode reported as "Episode <model>",
which fails when the pole fell before --act-min-return steps (the agent is then wrong, not
merely slow). Idle unless --act-model names the model (cartpole_policy)."""

from __future__ import annotations

import itertools
import time

import gevent
import gymnasium as gym
from locust import between, task

from deepserve import agents

from .grpc_user import GrpcUser

_seeds = itertools.count(200_000)
"""Episodes no test or report uses, one each."""


class ActUser(GrpcUser):
    wait_time = between(0, 0.01)

    @task
    def episode(self) -> None:
        options = self.environment.parsed_options
        model = options.act_model
        if not model:
            gevent.sleep(1)  # not asked for: idle
            return
        env = gym.make("CartPole-v1")
        observation, _ = env.reset(seed=next(_seeds))
        started, total, done = time.perf_counter(), 0.0, False
        exception: Exception | None = None
        chosen: list[agents.Action] = []

        def keep(outputs: dict) -> None:
            chosen[:] = [agents.actions(outputs, single=True)]  # type: ignore[list-item]

        while not done:
            call, _ = agents.act_call(model, observation, "")
            if not self.request(call, f"Act {model}", keep):
                exception = RuntimeError(f"a step failed after {total:.0f}")
                break
            observation, reward, terminated, truncated, _ = env.step(chosen[0].action)
            total += float(reward)
            done = terminated or truncated
        env.close()
        if exception is None and total < float(options.act_min_return):
            exception = ValueError(f"the pole fell after {total:.0f} steps")
        self.environment.events.request.fire(
            request_type="episode",
            name=f"Episode {model}",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=int(total),
            exception=exception,
            context={},
        )
