"""A policy for CartPole (gymnasium's CartPole-v1), trained with PPO, exported to ONNX.

The agent sees the cart's position and velocity and the pole's angle and angular velocity and
pushes the cart left or right; an episode ends when the pole falls past 12 degrees, the cart
leaves the track, or after 500 steps (the most an episode can return). PPO (clipped policy
gradient, a value baseline, generalised advantage estimates) on 8 environments at once; the
exported graph is the policy alone: `observation` FP32 [N, 4] -> `action_values` FP32 [N, 2]
(its preferences, logits) and `action` INT64 [N, 1] (the greedy choice, 0 left, 1 right).

    python -m deepserve.training.cartpole --out models
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from tritonclient.grpc import model_config_pb2 as mc

from .export import ExportSpec, TensorInfo, export_onnx
from .model_files import cpu_latency_ms, cpu_session, onnx_size_mb, write_model_card, write_report

NAME = "cartpole_policy"
ENVIRONMENT = "CartPole-v1"
ACTIONS = ["left", "right"]
HIDDEN = 64
ENVS = 8
STEPS = 256  # per environment per update
EPOCHS = 4
MINIBATCH = 256
GAMMA, LAMBDA, CLIP = 0.99, 0.95, 0.2
EVALUATION_SEEDS = range(100_000, 100_100)
"""Episodes that measure the policy: seeds no training episode used."""


def _mlp(outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(4, HIDDEN),
        nn.Tanh(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.Tanh(),
        nn.Linear(HIDDEN, outputs),
    )


class ActorCritic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.policy = _mlp(len(ACTIONS))
        self.value = _mlp(1)


class GreedyPolicy(nn.Module):
    """What is served: the policy's logits and its greedy action."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.policy(observation)
        return values, values.argmax(dim=1, keepdim=True)


def run_episodes(act, seeds: range | list[int]) -> list[float]:  # type: ignore[no-untyped-def]
    """The return of one episode per seed, `act(observation [1, 4]) -> action` choosing."""
    env = gym.make(ENVIRONMENT)
    returns = []
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action = act(observation[None].astype(np.float32))
            observation, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def _greedy(model: ActorCritic):  # type: ignore[no-untyped-def]
    def act(observation: np.ndarray) -> int:
        with torch.no_grad():
            return int(model.policy(torch.from_numpy(observation)).argmax())

    return act


def train(total_steps: int, seed: int, target: float = 500.0) -> tuple[ActorCritic, int]:
    """PPO until the greedy policy returns `target` on 10 training-seed episodes (checked after
    each update once it does well on the rollouts) or `total_steps` are spent."""
    torch.manual_seed(seed)
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(ENVIRONMENT) for _ in range(ENVS)])
    model = ActorCritic()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)
    observation, _ = envs.reset(seed=seed)
    steps, update = 0, 0
    finished: list[float] = []
    running = np.zeros(ENVS)
    while steps < total_steps:
        buffers: dict[str, list] = {k: [] for k in ("obs", "act", "logp", "val", "rew", "done")}
        for _ in range(STEPS):
            obs = torch.from_numpy(observation.astype(np.float32))
            with torch.no_grad():
                dist = torch.distributions.Categorical(logits=model.policy(obs))
                action = dist.sample()
                value = model.value(obs).squeeze(1)
            observation, reward, terminated, truncated, _ = envs.step(action.numpy())
            running += reward
            for i in np.flatnonzero(terminated | truncated):
                finished.append(running[i])
                running[i] = 0
            # A cut-off episode (truncated at 500) is not a failure: bootstrap it as going on.
            buffers["obs"].append(obs)
            buffers["act"].append(action)
            buffers["logp"].append(dist.log_prob(action))
            buffers["val"].append(value)
            buffers["rew"].append(torch.as_tensor(reward, dtype=torch.float32))
            buffers["done"].append(torch.as_tensor(terminated, dtype=torch.float32))
        steps += STEPS * ENVS
        with torch.no_grad():
            next_value = model.value(torch.from_numpy(observation.astype(np.float32))).squeeze(1)
        advantages = torch.zeros(STEPS, ENVS)
        gae = torch.zeros(ENVS)
        for t in reversed(range(STEPS)):
            following = next_value if t == STEPS - 1 else buffers["val"][t + 1]
            alive = 1.0 - buffers["done"][t]
            delta = buffers["rew"][t] + GAMMA * following * alive - buffers["val"][t]
            gae = delta + GAMMA * LAMBDA * alive * gae
            advantages[t] = gae
        values = torch.stack(buffers["val"])
        returns = (advantages + values).flatten()
        obs_all = torch.stack(buffers["obs"]).flatten(0, 1)
        act_all = torch.stack(buffers["act"]).flatten()
        logp_all = torch.stack(buffers["logp"]).flatten()
        adv_all = advantages.flatten()
        adv_all = (adv_all - adv_all.mean()) / (adv_all.std() + 1e-8)
        for _ in range(EPOCHS):
            for batch in torch.randperm(len(obs_all)).split(MINIBATCH):
                dist = torch.distributions.Categorical(logits=model.policy(obs_all[batch]))
                ratio = (dist.log_prob(act_all[batch]) - logp_all[batch]).exp()
                clipped = ratio.clamp(1 - CLIP, 1 + CLIP)
                policy_loss = -torch.min(ratio * adv_all[batch], clipped * adv_all[batch]).mean()
                value_loss = (model.value(obs_all[batch]).squeeze(1) - returns[batch]).pow(2).mean()
                loss = policy_loss + 0.5 * value_loss - 0.01 * dist.entropy().mean()
                optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                optimiser.step()
        update += 1
        recent = float(np.mean(finished[-20:])) if finished else 0.0
        print(f"update {update}: {steps} steps, mean return of the last 20 episodes {recent:.0f}")
        if recent >= 450:
            greedy_returns = run_episodes(_greedy(model), range(seed, seed + 10))
            if np.mean(greedy_returns) >= target:
                break
    envs.close()
    return model, steps


def export(model: ActorCritic, out: Path) -> Path:
    spec = ExportSpec(
        name=NAME,
        inputs=[TensorInfo("observation", mc.TYPE_FP32, [4])],
        outputs=[
            TensorInfo("action_values", mc.TYPE_FP32, [len(ACTIONS)], "labels.txt"),
            TensorInfo("action", mc.TYPE_INT64, [1]),
        ],
        max_batch_size=64,
        # An observation that is not a number would pick an action all the same: refused.
        parameters={"finite_inputs": "1", "intra_op_thread_count": "1"},
        labels=ACTIONS,
    )
    return export_onnx(GreedyPolicy(model.policy), torch.zeros(1, 4), spec, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=400_000, help="most environment steps")
    parser.add_argument("--quick", action="store_true", help="two updates, for tests")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps = 2 * STEPS * ENVS
    started = time.perf_counter()
    model, steps = train(args.steps, args.seed)
    seconds = time.perf_counter() - started
    path = export(model, args.out)
    session = cpu_session(path)
    episodes = EVALUATION_SEEDS if not args.quick else EVALUATION_SEEDS[:3]
    returns = run_episodes(lambda o: session.run(["action"], {"observation": o})[0][0, 0], episodes)
    mean_return = float(np.mean(returns))
    observations = np.random.default_rng(args.seed).normal(0, 1, (1000, 4)).astype(np.float32)
    with torch.no_grad():
        expected = model.policy(torch.from_numpy(observations)).numpy()
    got = session.run(["action_values"], {"observation": observations})[0]
    gap = float(np.abs(got - expected).max())
    latency = cpu_latency_ms(path, observations, [1, 64])
    print(
        f"{NAME}: mean return {mean_return:.1f} over {len(returns)} held-out episodes "
        f"(min {min(returns):.0f}), {steps} training steps in {seconds:.0f} s; "
        f"PyTorch vs ONNX Runtime max difference {gap:.2e}"
    )
    report = {
        "model": NAME,
        "environment": ENVIRONMENT,
        "gymnasium": gym.__version__,
        "mean_return": mean_return,
        "min_return": min(returns),
        "episodes": len(returns),
        "evaluation_seeds": [episodes[0], episodes[-1]],
        "training_steps": steps,
        "train_seconds": seconds,
        "seed": args.seed,
        "parity_max_abs": gap,
        "onnxruntime": ort.__version__,
        "cpu_latency_ms": latency,
        "size_mb": onnx_size_mb(path),
    }
    write_report(path.parent.parent, report)
    write_model_card(
        path.parent.parent,
        f"{NAME}: balancing a pole on a cart ({ENVIRONMENT})",
        {
            "What": f"A policy network (4 -> {HIDDEN} -> {HIDDEN} -> 2, tanh) trained with PPO "
            f"beside a value network of the same shape (not exported), on {ENVS} environments "
            f"at once, {STEPS} steps each an update, clip {CLIP}, gamma {GAMMA}, lambda {LAMBDA}.",
            "Input / output": "`observation` FP32 [N, 4] (cart position, cart velocity, pole "
            "angle, pole angular velocity) -> `action_values` FP32 [N, 2] (the policy's logits "
            "for left and right, labels.txt) and `action` INT64 [N, 1] (the greedy action). The "
            "config's `finite_inputs` makes the server refuse NaN and infinities.",
            "Data": f"gymnasium {gym.__version__}'s {ENVIRONMENT}, simulated (nothing to "
            "download); training episodes use seeds from the training seed up, the measure "
            f"seeds {episodes[0]}..{episodes[-1]}.",
            "Command": f"`python -m deepserve.training.cartpole --out models` (seed {args.seed}; "
            f"stops when the greedy policy returns 500 on 10 training episodes: {steps} steps, "
            f"{seconds:.0f} s on 2 CPU cores)",
            "Metrics": f"mean return {mean_return:.1f} over {len(returns)} held-out episodes "
            f"(the most is 500; lowest {min(returns):.0f}), greedy actions through ONNX Runtime.",
            "Parity": f"PyTorch against ONNX Runtime on 1,000 random observations: max "
            f"difference {gap:.2e} in the action values.",
            "Size": f"{onnx_size_mb(path) * 1000:.0f} kB. CPU latency (ms per run, median): "
            + ", ".join(f"batch {b}: {ms:.3f}" for b, ms in latency.items()),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
