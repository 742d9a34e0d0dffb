"""An FID-style distance for generated digits: the Fréchet distance between Gaussians fitted to
features of generated and of real held-out digits, the features being the bundled digit
classifier's last hidden layer (FID proper uses Inception-v3 on ImageNet photos, which neither
fits 28x28 digits nor is here). Its floor is the same distance between two disjoint sets of
real held-out digits of the same size: a generator as good as the data would score near it.
Figures are comparable only with the same classifier and sample sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def feature_session(classifier: Path) -> tuple[ort.InferenceSession, str]:
    """The classifier with its last layer's input exposed as an output."""
    model = onnx.load(str(classifier))
    last = model.graph.node[-1]
    features = last.input[0]
    model.graph.output.append(onnx.ValueInfoProto(name=features))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, features


def features(session: ort.InferenceSession, name: str, digits: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] -> FP64 [N, F]."""
    feed = {session.get_inputs()[0].name: digits[..., None].astype(np.uint8)}
    return session.run([name], feed)[0].astype(np.float64)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2); the trace of the root is taken as
    that of (S_a^1/2 S_b S_a^1/2)^1/2, which is symmetric, so no complex square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(cov_a)
    cross = np.trace(_sqrt_psd(root_a @ cov_b @ root_a))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def fid_style(
    classifier: Path, generated: np.ndarray, real: np.ndarray, seed: int
) -> tuple[float, float]:
    """(generated vs real, real vs other real), on as many digits of each as `real` holds
    twice over (two real sets, drawn without overlap); generated digits are then taken evenly
    through the list, keeping its mix of classes."""
    session, name = feature_session(classifier)
    count = min(len(generated), len(real) // 2)
    generated = generated[np.linspace(0, len(generated) - 1, count).astype(int)]
    order = np.random.default_rng(seed).permutation(len(real))
    first, second = real[order[:count]], real[order[count : 2 * count]]
    gen_features, real_features = features(session, name, generated), features(session, name, first)
    distance = frechet_distance(gen_features, real_features)
    floor = frechet_distance(features(session, name, second), real_features)
    return distance, floor


def card_text(distance: float, floor: float, count: int) -> str:
    return (
        f"{distance:.2f} between {count} generated digits and {count} real held-out MNIST "
        f"digits; {floor:.2f} between two sets of {count} real held-out digits (the floor). "
        "Fréchet distance of Gaussians fitted to the bundled `mnist` classifier's last hidden "
        "layer (128 features), as FID does with Inception-v3's: comparable only with the "
        "same classifier and sizes. Measured again by `python -m "
        "deepserve.training.gan_measures --data path/to/mnist`."
    )


def _generate(model: Path, per_class: int) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    seeds = np.arange(per_class, dtype=np.int64)[:, None]
    return np.concatenate([
        session.run(["image"], {"class": np.full_like(seeds, digit), "seed": seeds})[0][..., 0]
        for digit in range(10)
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Measures an exported generator again (seeds 0 .. 99 of each class, as training does)
    and writes the figures into its report and card."""
    import argparse
    import json

    from .mnist_data import load_split

    parser = argparse.ArgumentParser(description="FID-style distance of an exported generator")
    parser.add_argument("--model", type=Path, default=Path("models/mnist_cgan"))
    parser.add_argument("--classifier", type=Path, default=Path("models/mnist/1/model.onnx"))
    parser.add_argument("--data", type=Path, required=True, help="folder with the MNIST files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    digits = _generate(args.model / "1" / "model.onnx", 100)
    split = load_split(args.data)
    distance, floor = fid_style(args.classifier, digits, split.test_images, args.seed)
    print(f"FID-style distance {distance:.2f}, real against real {floor:.2f}")
    report_path = args.model / "training_report.json"
    report = json.loads(report_path.read_text())
    report |= {"fid_style": distance, "fid_style_floor": floor}
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    card = args.model / "README.md"
    text, heading = card.read_text(), "## FID-style distance"
    section = f"{heading}\n\n{card_text(distance, floor, len(digits))}\n\n"
    if heading in text:
        start = text.index(heading)
        text = text[:start] + section + text[text.index("## ", start + 3) :]
    else:
        text = text.replace("## Parity", section + "## Parity", 1)
    card.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
