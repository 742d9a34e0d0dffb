"""The training loop the sequence families share: AdamW, a one-cycle learning rate, gradients
clipped, shuffled batches from a seeded generator, the loss printed each epoch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm


def fit(
    model: nn.Module,
    count: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    generator: torch.Generator,
    batch_size: int,
    max_lr: float,
    name: str,
) -> nn.Module:
    """Trains `model` on `count` examples; `batch_loss(index)` is one batch's mean loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=max_lr / 2, weight_decay=1e-4)
    steps = epochs * ((count + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps)
    for epoch in tqdm(range(epochs), desc=name, unit="epoch"):
        model.train()
        order = torch.randperm(count, generator=generator)
        total = 0.0
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            loss = batch_loss(index)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        tqdm.write(f"epoch {epoch + 1}/{epochs}: loss {total / count:.4f}")
    return model.eval()
