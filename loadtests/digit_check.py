"""What GenerateUser checks of each answer, apart from Locust (which patches the process
it is imported into): 16 digits of 28x28 with a digit's ink, not a blank or saturated image."""

from __future__ import annotations

import numpy as np


def check_digits(digits: np.ndarray) -> None:
    if digits.shape != (16, 28, 28):
        raise ValueError(f"expected 16 digits of 28x28, got {digits.shape}")
    ink = (digits > 127).mean(axis=(1, 2))
    # A blank image has no ink; the thinnest good "1"s have about 1.4 % (11 pixels: 10 of
    # 464,000 made under 2 %), so the bound sits below them.
    if not ((ink > 0.005) & (ink < 0.6)).all():
        raise ValueError(f"digits without a digit's ink: {np.round(ink, 3).tolist()}")
