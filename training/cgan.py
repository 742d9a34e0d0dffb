"""A conditional DCGAN on MNIST: a class and a seed in, a 28x28 digit of that class out.

A generator (noise and the class's one-hot -> 7x7 -> 14x14 -> 28x28 by transposed
convolutions) and a discriminator (the image and the class as ten constant planes -> two strided
convolutions -> real or generated) trained against each other. The exported graph is the
generator alone, with its noise made inside from the seed (a Lehmer generator, then Box-Muller),
so the same seed gives the same digit from any client: `class` INT64 [N, 1] and `seed` INT64
[N, 1] -> `image` UINT8 [N, 28, 28, 1], the format the digit classifiers take.

Measure: the bundled `mnist` classifier reads 1,000 generated digits (100 seeds a class) and
must agree with the class asked for on at least 90 % of them.

    python -m deepserve.training.cgan --data ../shared/data/mnist --out models
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn import functional as F
from tritonclient.grpc import model_config_pb2 as mc

from . import gan_measures
from .cli_args import add_common, parse
from .export import OPSET, ExportSpec, TensorInfo, write_config
from .mnist_data import load_split
from .model_files import cpu_session, onnx_size_mb, write_model_card, write_report

NAME = "mnist_cgan"
NOISE = 64
CLASSES = 10
MODULUS = 2_147_483_647  # 2^31 - 1: the Lehmer (MINSTD) generator's prime
MULTIPLIER = 48_271
SEED_BOUND = MODULUS - 2
"""Seeds 0 .. SEED_BOUND: each gives its own noise."""


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Linear(NOISE + CLASSES, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU()
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, noise: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
        x = self.project(torch.cat([noise, one_hot], dim=1)).view(-1, 128, 7, 7)
        return self.up(x)  # [N, 1, 28, 28] in -1..1


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1 + CLASSES, 64, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1),
        )

    def forward(self, image: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
        planes = one_hot[:, :, None, None].expand(-1, -1, 28, 28)
        return self.net(torch.cat([image, planes], dim=1)).squeeze(1)


def _powers() -> torch.Tensor:
    """MULTIPLIER^k mod MODULUS for k = 1 .. 2 * NOISE: the k-th state of the generator
    started at s is s * MULTIPLIER^k mod MODULUS, so all of them come in one multiplication."""
    values, value = [], 1
    for _ in range(2 * NOISE):
        value = value * MULTIPLIER % MODULUS
        values.append(value)
    return torch.tensor(values, dtype=torch.int64)


def seeded_noise(seed: torch.Tensor, powers: torch.Tensor) -> torch.Tensor:
    """[N, 1] int64 seeds -> [N, NOISE] standard normal noise, the same for the same seed:
    2 * NOISE Lehmer states (products below 2^62: no overflow in int64), as uniforms in (0, 1),
    paired by Box-Muller."""
    start = torch.remainder(seed, MODULUS - 1) + 1  # 1 .. MODULUS - 1: never the fixed point 0
    states = torch.remainder(start * powers[None, :], MODULUS)
    uniform = states.to(torch.float64) / MODULUS
    radius = torch.sqrt(-2.0 * torch.log(uniform[:, :NOISE]))
    return (radius * torch.cos(2 * math.pi * uniform[:, NOISE:])).to(torch.float32)


class ServedGenerator(nn.Module):
    """What is served: class and seed in, a uint8 NHWC digit out."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("powers", _powers())
        self.register_buffer("classes", torch.arange(CLASSES, dtype=torch.int64)[None, :])

    def forward(self, digit: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        one_hot = (digit == self.classes).to(torch.float32)  # out of range: refused by the server
        image = self.generator(seeded_noise(seed, self.powers), one_hot)
        pixels = torch.round((image + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1)


def train(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int) -> Generator:
    torch.manual_seed(seed)
    real_all = torch.from_numpy(np.array(images)).float().div(127.5).sub(1.0)[:, None]
    labels_all = torch.from_numpy(labels.astype(np.int64))
    generator, discriminator = Generator(), Discriminator()
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for epoch in range(epochs):
        d_losses, g_losses = [], []
        for batch in torch.randperm(len(real_all)).split(64):
            real, one_hot = real_all[batch], F.one_hot(labels_all[batch], CLASSES).float()
            fake_classes = F.one_hot(torch.randint(0, CLASSES, (len(batch),)), CLASSES).float()
            fake = generator(torch.randn(len(batch), NOISE), fake_classes)
            # real labelled 0.9 (one-sided smoothing): a discriminator less sure of itself
            d_loss = F.binary_cross_entropy_with_logits(
                discriminator(real, one_hot), torch.full((len(batch),), 0.9)
            ) + F.binary_cross_entropy_with_logits(
                discriminator(fake.detach(), fake_classes), torch.zeros(len(batch))
            )
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
            g_loss = F.binary_cross_entropy_with_logits(
                discriminator(fake, fake_classes), torch.ones(len(batch))
            )
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
            d_losses.append(d_loss.item())
            g_losses.append(g_loss.item())
        print(
            f"epoch {epoch + 1}/{epochs}: discriminator loss {np.mean(d_losses):.3f}, "
            f"generator loss {np.mean(g_losses):.3f}",
            flush=True,
        )
    return generator.eval()


def export(generator: Generator, out: Path) -> Path:
    spec = ExportSpec(
        name=NAME,
        inputs=[
            TensorInfo("class", mc.TYPE_INT64, [1]),
            TensorInfo("seed", mc.TYPE_INT64, [1]),
        ],
        outputs=[TensorInfo("image", mc.TYPE_UINT8, [28, 28, 1])],
        max_batch_size=64,
        parameters={"input_bounds": f"class:0..{CLASSES - 1},seed:0..{SEED_BOUND}"},
    )
    served = ServedGenerator(generator).eval()
    example = (torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.int64))
    model_dir = out / NAME
    path = model_dir / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ["class", "seed", "image"]
    torch.onnx.export(
        served,
        example,
        str(path),
        input_names=names[:2],
        output_names=names[2:],
        dynamic_axes={name: {0: "batch"} for name in names},
        opset_version=OPSET,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    write_config(spec, model_dir)
    return path


def generated_digits(generated: Path, per_class: int) -> np.ndarray:
    """uint8 [CLASSES * per_class, 28, 28]: seeds 0 .. per_class - 1 of each class in turn."""
    generate = cpu_session(generated)
    batches = []
    for digit in range(CLASSES):
        feeds = {
            "class": np.full((per_class, 1), digit, np.int64),
            "seed": np.arange(per_class, dtype=np.int64)[:, None],
        }
        batches.append(generate.run(["image"], feeds)[0][..., 0])
    return np.concatenate(batches)


def class_agreement(digits: np.ndarray, classifier: Path) -> tuple[float, list[float]]:
    """The share of generated digits (generated_digits' order) the classifier reads as the
    class asked for, overall and per class."""
    classify = cpu_session(classifier)
    logits = classify.run(None, {classify.get_inputs()[0].name: digits[..., None]})[0]
    asked = np.repeat(np.arange(CLASSES), len(digits) // CLASSES)
    agreement = [float((logits.argmax(1)[asked == d] == d).mean()) for d in range(CLASSES)]
    return float(np.mean(agreement)), agreement


def _latency_ms(session, batches: list[int], runs: int = 20) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """Median ms a run of ONNX Runtime on the CPU at each batch size."""
    result = {}
    for batch in batches:
        feeds = {"class": np.zeros((batch, 1), np.int64), "seed": np.arange(batch)[:, None]}
        session.run(None, feeds)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, feeds)
            times.append((time.perf_counter() - started) * 1e3)
        result[batch] = float(np.median(times))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser, quick_help="one epoch on 512 digits, for tests")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument(
        "--classifier", type=Path,
        help="the digit classifier that judges the generated digits (default: OUT/mnist's)",
    )  # fmt: skip
    args = parse(parser, argv)
    judge = args.classifier or args.out / "mnist" / "1" / "model.onnx"
    if not judge.is_file():
        parser.error(f"no digit classifier at {judge} to judge the digits: train mnist first")
    split = load_split(args.data)
    images, labels = split.train_images, split.train_labels
    if args.quick:
        args.epochs, images, labels = 1, images[:512], labels[:512]
    started = time.perf_counter()
    generator = train(images, labels, args.epochs, args.seed)
    seconds = time.perf_counter() - started
    path = export(generator, args.out)
    session = cpu_session(path)
    feeds = {"class": np.array([[7], [7]], np.int64), "seed": np.array([[5], [5]], np.int64)}
    first, again = session.run(["image"], feeds)[0], session.run(["image"], feeds)[0]
    same_seed_same_image = bool((first[0] == first[1]).all() and (first == again).all())
    with torch.no_grad():
        served = ServedGenerator(generator).eval()
        expected = served(torch.tensor([[3], [8]]), torch.tensor([[1], [2]])).numpy()
    got = session.run(["image"], {"class": np.array([[3], [8]]), "seed": np.array([[1], [2]])})[0]
    parity = int(np.abs(got.astype(int) - expected.astype(int)).max())
    per_class = 10 if args.quick else 100
    digits = generated_digits(path, per_class)
    overall, agreement = class_agreement(digits, judge)
    fid, fid_floor = gan_measures.fid_style(judge, digits, split.test_images, args.seed)
    table = ", ".join(f"{d}: {a:.2f}" for d, a in enumerate(agreement))
    print(
        f"{NAME}: the classifier agrees with the class asked for on {overall:.4f} of "
        f"{per_class * CLASSES} generated digits ({table}); FID-style distance {fid:.2f} "
        f"(real against real: {fid_floor:.2f}); same seed, same image: "
        f"{same_seed_same_image}; PyTorch vs ONNX Runtime max pixel difference {parity}; "
        f"trained {seconds:.0f} s"
    )
    latency = _latency_ms(session, [1, 16])
    report = {
        "model": NAME,
        "class_agreement": overall,
        "class_agreement_by_class": agreement,
        "generated": per_class * CLASSES,
        "judge": f"{judge.parent.parent.name} (digit classifier)",
        "fid_style": fid,
        "fid_style_floor": fid_floor,
        "same_seed_same_image": same_seed_same_image,
        "parity_max_pixel_difference": parity,
        "epochs": args.epochs,
        "train_digits": len(images),
        "seed": args.seed,
        "train_seconds": seconds,
        "size_mb": onnx_size_mb(path),
    }
    write_report(path.parent.parent, report)
    write_model_card(
        path.parent.parent,
        f"{NAME}: a digit of the class asked for",
        {
            "What": "A conditional DCGAN's generator (noise and the class's one-hot -> 128x7x7 "
            "-> 64x14x14 -> 1x28x28, transposed convolutions, tanh), trained against a "
            "discriminator that sees the image and the class; the noise is made in the graph "
            "from the seed (Lehmer generator, Box-Muller), so a seed names one digit.",
            "Input / output": "`class` INT64 [N, 1] (0-9) and `seed` INT64 [N, 1] (0 .. "
            f"{SEED_BOUND}) -> `image` UINT8 [N, 28, 28, 1], white on black as MNIST. The "
            "config's `input_bounds` makes the server refuse other values.",
            "Data": f"MNIST ({split.description}): the {len(images)} training digits; "
            "MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0.",
            "Command": f"`python -m deepserve.training.cgan --out models` (epochs "
            f"{args.epochs}, seed {args.seed}, {seconds:.0f} s on 2 CPU cores)",
            "Metrics": f"the bundled `mnist` classifier reads {per_class * CLASSES} generated "
            f"digits ({per_class} seeds a class) as the class asked for: {overall:.4f}. By "
            f"class: {table}.",
            "FID-style distance": gan_measures.card_text(fid, fid_floor, len(digits)),
            "Parity": f"PyTorch against ONNX Runtime: max pixel difference {parity} (of 255); "
            f"the same seed gives the same image: {same_seed_same_image}.",
            "Size": f"{onnx_size_mb(path):.2f} MB. CPU latency (ms per run, median): "
            + ", ".join(f"batch {b}: {ms:.2f}" for b, ms in latency.items()),
        },
    )
    return 0 if same_seed_same_image else 1


if __name__ == "__main__":
    raise SystemExit(main())
