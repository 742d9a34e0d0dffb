"""The SDK against real servers: results equal in-process ONNX Runtime, every input type,
sync and async, lists, errors, several targets."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepserve
from deepserve import AsyncClient, Client

from ..mnist_sample import digits
from ..onnx_models import ADD_SUB_CONFIG, add_sub, write_model
from ..reference import run_in_process
from ..server_process import RunningServer, free_port, run_server

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled models plus a tensor-only model (no task parameters)."""
    repo = tmp_path_factory.mktemp("sdk") / "models"
    repo.mkdir()
    for model in MODELS.iterdir():
        if model.is_dir():
            (repo / model.name).symlink_to(model)
    write_model(repo, "add_sub", add_sub(), ADD_SUB_CONFIG)
    return repo


@pytest.fixture(scope="module")
def sdk_server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(repo, tmp_path_factory.mktemp("sdk-logs")) as server:
        yield server


@pytest.fixture()
def client(sdk_server: RunningServer) -> Iterator[Client]:
    with Client(sdk_server.url, retries=0) as client:
        yield client


def test_classify_real_digits_matches_onnxruntime(client: Client) -> None:
    images, labels = digits()
    batch = images[:64]
    results = client.classify(list(batch), model="mnist", top_k=3)
    logits = run_in_process(MODELS, "mnist", {"image": batch[..., None].copy()})["logits"]
    probabilities = _softmax(logits)
    for result, row in zip(results, probabilities, strict=True):
        best = np.argsort(-row, kind="stable")[:3]
        assert [label.index for label in result.labels] == best.tolist()
        assert [label.label for label in result.labels] == [str(i) for i in best]
        np.testing.assert_allclose([label.score for label in result.labels], row[best], atol=1e-5)
    accuracy = np.mean([int(r.label) == y for r, y in zip(results, labels[:64], strict=True)])
    assert accuracy >= 0.98


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_input_type_gives_the_same_answer(client: Client, tmp_path: Path) -> None:
    images, _ = digits()
    digit = images[3]
    path = tmp_path / "digit.png"
    path.write_bytes(_png(digit))
    bmp = io.BytesIO()
    Image.fromarray(digit).save(bmp, format="BMP")
    rgba = np.dstack([digit, digit, digit, np.full_like(digit, 255)])
    forms = {
        "array HxW": digit,
        "array HxWx1": digit[..., None],
        "array HxWx3": np.dstack([digit] * 3),
        "array HxWx4": rgba,
        "PNG bytes": _png(digit),
        "BMP bytes": bmp.getvalue(),
        "path": path,
        "path str": str(path),
        "PIL L": Image.fromarray(digit),
        "PIL RGB": Image.fromarray(digit).convert("RGB"),
    }
    reference = client.classify(digit, model="mnist", top_k=10)
    for name, form in forms.items():
        result = client.classify(form, model="mnist", top_k=10)
        assert result.labels == reference.labels, name


def test_images_of_another_size_are_resized(client: Client) -> None:
    images, labels = digits()
    big = np.asarray(Image.fromarray(images[5]).resize((112, 112), Image.BILINEAR))
    assert client.classify(big, model="mnist").label == str(labels[5])


def test_one_image_gives_one_result_and_a_list_gives_a_list(client: Client) -> None:
    images, _ = digits()
    one = client.classify(images[0], model="mnist")
    assert isinstance(one, deepserve.Classification)
    many = client.classify([images[0], images[1]], model="mnist")
    assert isinstance(many, list) and len(many) == 2 and many[0] == one
    batch = client.classify(images[:70, ..., None], model="mnist")  # 4-D: more than max batch
    assert len(batch) == 70


def test_infer_models_and_model_info(client: Client) -> None:
    images, _ = digits()
    batch = images[:8, ..., None].copy()
    logits = client.infer("mnist", {"image": batch})["logits"]
    expected = run_in_process(MODELS, "mnist", {"image": batch})["logits"]
    assert logits.tobytes() == expected.tobytes()
    a = np.ones((2, 16), np.float32)
    out = client.infer("add_sub", {"INPUT0": a, "INPUT1": a}, outputs=["OUTPUT1"])
    assert list(out) == ["OUTPUT1"] and not out["OUTPUT1"].any()
    tasks = {m.name: m.task for m in client.models()}
    assert tasks["mnist"] == "classification" and tasks["add_sub"] == ""
    info = client.model_info("mnist")
    assert info.image_size == (28, 28, 1) and info.labels[:3] == ("0", "1", "2")
    assert info.inputs == {"image": ("UINT8", (-1, 28, 28, 1))}
    assert client.ready() and client.live()


def test_async_client_gives_the_same_answers(sdk_server: RunningServer) -> None:
    images, _ = digits()

    async def main():
        async with AsyncClient(sdk_server.url) as client:
            singles = await asyncio.gather(
                *(client.classify(images[i], model="mnist", top_k=2) for i in range(16))
            )
            listed = await client.classify(list(images[:16]), model="mnist", top_k=2)
            logits = await client.infer("mnist", {"image": images[:2, ..., None].copy()})
            return singles, listed, logits, await client.ready(), await client.models()

    singles, listed, logits, ready, models = asyncio.run(main())
    assert singles == listed
    assert logits["logits"].shape == (2, 10) and ready
    assert {m.name for m in models} >= {"mnist", "cifar10_resnet20"}


def test_errors_are_mapped(client: Client, sdk_server: RunningServer) -> None:
    images, _ = digits()
    with pytest.raises(deepserve.ModelNotFoundError, match="nope"):
        client.classify(images[0], model="nope")
    with pytest.raises(deepserve.InvalidInputError, match="image 0"):
        client.classify(b"not an image", model="mnist")
    with pytest.raises(deepserve.InvalidInputError, match="does classification, not detection"):
        client.detect(images[0], model="mnist")
    with pytest.raises(deepserve.InvalidInputError, match="no 'task' parameter"):
        client.classify(images[0], model="add_sub")
    with pytest.raises(deepserve.InvalidInputError, match="INPUT0"):
        client.infer("add_sub", {"INPUT0": np.ones((1, 3), np.float32)})
    with pytest.raises(deepserve.DeepserveError, match="say which model"):
        client.classify(images[0])  # two classification models: ambiguous
    with pytest.raises(TypeError, match="cannot send"):
        client.classify(object(), model="mnist")
    with pytest.raises(deepserve.DeadlineExceededError):
        # Sixteen 640x640 scenes take the segmenter far longer than 10 ms on any CPU.
        big = np.zeros((640, 640, 3), np.uint8)
        Client(sdk_server.url, timeout=0.01, retries=0).segment([big] * 16, model="segmentation")
    with pytest.raises(deepserve.UnavailableError):
        Client(f"127.0.0.1:{free_port()}", timeout=2, retries=1).classify(images[0], model="mnist")


def test_two_targets_survive_one_going_down(repo: Path, tmp_path: Path) -> None:
    images, labels = digits()
    with run_server(repo, tmp_path, "--model", "mnist") as first:
        port = int(first.url.rsplit(":", 1)[1])
        with run_server(repo, tmp_path, "--model", "mnist") as second:
            client = Client([first.url, second.url], timeout=5, retries=3)
            answers = [client.classify(images[i], model="mnist").label for i in range(10)]
            first.process.terminate()
            first.process.wait(timeout=20)
            answers += [client.classify(images[i], model="mnist").label for i in range(10, 30)]
            with run_server(repo, tmp_path, "--model", "mnist", port=port):
                answers += [client.classify(images[i], model="mnist").label for i in range(30, 50)]
            client.close()
    assert answers == [str(y) for y in labels[:50]]


def test_vision_and_tensor_requests_batch_together(client: Client, sdk_server) -> None:
    """Classify and ModelInfer requests to one model share its batches, and each gets its own
    answer."""
    import tritonclient.grpc as triton

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    logits = run_in_process(MODELS, "cifar10_resnet20", {"image": images})["logits"]
    expected = [str(i) for i in logits.argmax(1)]
    labels = client.model_info("cifar10_resnet20").labels
    stats = triton.InferenceServerClient(sdk_server.url)
    before = stats.get_inference_statistics("cifar10_resnet20").model_stats[0]

    async def main():
        async with AsyncClient(sdk_server.url) as aclient:
            vision = [
                aclient.classify(images[i], model="cifar10_resnet20") for i in range(0, 48, 2)
            ]
            tensor = [
                aclient.infer("cifar10_resnet20", {"image": images[i : i + 1]})
                for i in range(1, 48, 2)
            ]
            return await asyncio.gather(*vision), await asyncio.gather(*tensor)

    classified, inferred = asyncio.run(main())
    after = stats.get_inference_statistics("cifar10_resnet20").model_stats[0]
    for i, result in zip(range(0, 48, 2), classified, strict=True):
        assert result.label == labels[int(expected[i])]
    for i, result in zip(range(1, 48, 2), inferred, strict=True):
        assert result["logits"].tobytes() == logits[i : i + 1].tobytes()
    assert after.inference_count - before.inference_count == 48
    assert after.execution_count - before.execution_count < 48
