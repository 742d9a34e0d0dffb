"""The FID-style distance in process: the Fréchet distance against closed forms, and the
bundled classifier's features telling real digits from noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepserve.training.gan_measures import fid_style, frechet_distance

from ..mnist_sample import digits

ROOT = Path(__file__).resolve().parents[2]


def test_frechet_distance_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200_000, 2))
    assert abs(frechet_distance(a, a)) < 1e-9
    # Gaussians N(m1, I) and N(m2, 4I) in 2-D: |m1 - m2|^2 + 2 * (1 + 4 - 2 * 2) = 9 + 2
    b = rng.normal(size=(200_000, 2)) * 2 + [3.0, 0.0]
    assert abs(frechet_distance(a, b) - 11.0) < 0.1


def test_real_digits_are_nearer_real_digits_than_noise_is() -> None:
    images, _ = digits()
    classifier = ROOT / "models" / "mnist" / "1" / "model.onnx"
    noise = np.random.default_rng(1).integers(0, 256, (100, 28, 28), np.uint8)
    real_distance, floor = fid_style(classifier, images[:100], images[100:], seed=0)
    noise_distance, _ = fid_style(classifier, noise, images[100:], seed=0)
    assert real_distance < 3 * floor < noise_distance
