"""Instances: the bound path (host buffers gathered in place, IOBinding in and out) answers
exactly as the plain path on real models, never hands a job rows a later batch overwrites, and
its options are read from the config. CUDA graphs and page-locked memory need a GPU: those
tests are skipped without one."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepserve.server.batching.instance import (
    BoundInstance,
    GraphInstance,
    IoOptions,
    PlainInstance,
    graph_buckets,
    host_buffer,
    io_options,
    make_instance,
    padding_buckets,
)
from deepserve.server.batching.queue import Job
from deepserve.server.protocol.errors import ModelLoadError
from deepserve.training.scenes import make_scene

from ..mnist_sample import digits

MODELS = Path(__file__).resolve().parents[2] / "models"
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def _config(name: str) -> mc.ModelConfig:
    return text_format.Parse((MODELS / name / "config.pbtxt").read_text(), mc.ModelConfig())


def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(MODELS / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def _job(feeds: dict[str, np.ndarray]) -> Job:
    items = len(next(iter(feeds.values())))
    return Job(feeds, items, (), (), 0, 0, None, None, None)  # type: ignore[arg-type]


def _digit_jobs(start: int, sizes: list[int]) -> list[Job]:
    images = digits()[0][..., None]
    jobs, offset = [], start
    for size in sizes:
        jobs.append(_job({"image": images[offset : offset + size]}))
        offset += size
    return jobs


def _scene_jobs(seeds: list[int], size: int | None = None) -> list[Job]:
    images, labels = digits()
    scenes = [make_scene(images, labels, seed).image for seed in seeds]
    if size is not None:
        scenes = [s[:size, :size] for s in scenes]
    return [_job({"image": np.ascontiguousarray(s[None])}) for s in scenes]


def _assert_same(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        assert left.keys() == right.keys()
        for name in left:
            assert left[name].dtype == right[name].dtype and left[name].shape == right[name].shape
            np.testing.assert_array_equal(left[name], right[name])


@pytest.mark.parametrize(
    ("name", "make_jobs", "outputs"),
    [
        ("mnist", lambda: _digit_jobs(0, [1, 3, 2, 5]), ["logits"]),
        ("ssd", lambda: _scene_jobs([1, 2, 3]), ["boxes", "scores", "classes", "count"]),
        ("ssd", lambda: _scene_jobs([4, 5]), ["count", "boxes"]),  # a subset, another order
        ("segmentation", lambda: _scene_jobs([6, 7], 200), ["mask"]),  # variable image size
    ],
)
def test_bound_path_answers_exactly_as_the_plain_path(name, make_jobs, outputs) -> None:
    config, session = _config(name), _session(name)
    plain = PlainInstance(session).run(make_jobs(), outputs)
    bound = BoundInstance(session, config, pinned=True).run(make_jobs(), outputs)
    _assert_same(bound.per_job, plain.per_job)
    assert bound.infer_ns > 0 and bound.input_ns >= 0


def test_rows_handed_out_survive_the_next_batch() -> None:
    """The bound path reuses its buffers: a job's answer must not change under it."""
    config, session = _config("mnist"), _session("mnist")
    instance = BoundInstance(session, config, pinned=False)
    first = instance.run(_digit_jobs(0, [4, 4]), ["logits"])
    kept = [{k: v.copy() for k, v in job.items()} for job in first.per_job]
    instance.run(_digit_jobs(100, [8]), ["logits"])  # other digits, the same buffer rows
    _assert_same(first.per_job, kept)


def test_gathering_is_into_the_instance_buffer_with_one_copy() -> None:
    config, session = _config("mnist"), _session("mnist")
    instance = BoundInstance(session, config, pinned=False)
    jobs = _digit_jobs(0, [2, 3])
    feeds, items = instance._gather(jobs)
    assert items == 5
    assert np.shares_memory(feeds["image"], instance.staging["image"])
    np.testing.assert_array_equal(feeds["image"], digits()[0][:5, ..., None])


def _with(name: str, **parameters: str) -> mc.ModelConfig:
    config = _config(name)
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def test_options_default_by_device_and_follow_the_config(caplog) -> None:
    assert io_options(_config("mnist"), on_gpu=False) == IoOptions(False, False, False)
    assert io_options(_config("mnist"), on_gpu=True) == IoOptions(True, True, False)
    forced = io_options(_with("mnist", io_binding="1", pinned_buffers="0"), on_gpu=False)
    assert forced.io_binding and not forced.pinned_buffers
    off = io_options(_with("mnist", io_binding="0", pinned_buffers="0"), on_gpu=True)
    assert off == IoOptions(False, False, False)
    with pytest.raises(ModelLoadError, match="io_binding must be '0' or '1', got 'yes'"):
        io_options(_with("mnist", io_binding="yes"), on_gpu=True)
    with caplog.at_level(logging.WARNING):
        assert not io_options(_with("mnist", cuda_graphs="1"), on_gpu=False).cuda_graphs
    assert "cuda_graphs asked for but it runs on the CPU" in caplog.text


def test_instance_chosen_by_where_the_session_runs() -> None:
    session = _session("mnist")
    assert isinstance(make_instance(session, _config("mnist")), PlainInstance)
    assert isinstance(make_instance(session, _with("mnist", io_binding="1")), BoundInstance)


def test_graph_buckets_are_the_preferred_sizes_and_the_largest() -> None:
    config = _config("mnist")
    config.max_batch_size = 64
    config.dynamic_batching.preferred_batch_size[:] = [8, 32]
    assert graph_buckets(config) == [8, 32, 64]


def test_padding_buckets_are_powers_of_two_and_the_configured_sizes() -> None:
    config = _config("mnist")
    config.max_batch_size = 48
    config.dynamic_batching.preferred_batch_size[:] = [24]
    assert padding_buckets(config) == [1, 2, 4, 8, 16, 24, 32, 48]


@pytest.mark.parametrize(
    ("name", "make_jobs", "outputs"),
    [
        ("mnist", lambda: _digit_jobs(0, [1, 3, 2]), ["logits"]),  # 6 rows run as 8
        ("ssd", lambda: _scene_jobs([1, 2, 3]), ["count", "boxes"]),  # 3 rows run as 4
    ],
)
def test_padded_batches_answer_as_the_plain_path(name, make_jobs, outputs) -> None:
    config, session = _config(name), _session(name)
    instance = BoundInstance(session, config, pinned=False, buckets=padding_buckets(config))
    feeds, items = instance._gather(make_jobs())
    padded = len(next(iter(feeds.values())))
    assert padded > items and padded in instance.buckets
    plain = PlainInstance(session).run(make_jobs(), outputs)
    _assert_same(instance.run(make_jobs(), outputs).per_job, plain.per_job)


def test_padding_follows_the_provider_and_the_config(caplog) -> None:
    assert io_options(_config("mnist"), on_gpu=True, tunes_per_shape=True).pad_batches
    assert not io_options(_config("mnist"), on_gpu=True).pad_batches  # TensorRT: any size
    off = io_options(_with("mnist", pad_batches="0"), on_gpu=True, tunes_per_shape=True)
    assert not off.pad_batches
    forced = io_options(_with("mnist", pad_batches="1", io_binding="1"), on_gpu=False)
    assert forced.pad_batches and forced.io_binding
    with caplog.at_level(logging.WARNING):
        plain = io_options(_with("mnist", pad_batches="1"), on_gpu=False)
    assert not plain.pad_batches and "pad_batches needs io_binding" in caplog.text
    session = _session("mnist")
    instance = make_instance(session, _with("mnist", pad_batches="1", io_binding="1"))
    assert isinstance(instance, BoundInstance) and instance.buckets[-1] == 64
    assert "padded to batch sizes [1, 2, 4," in instance.describe()


def test_host_buffer_without_cuda_is_plain_memory() -> None:
    array, pinned = host_buffer((4, 3), np.dtype(np.float32), pinned=not HAS_CUDA)
    assert array.shape == (4, 3) and not array.any()
    if not HAS_CUDA:
        assert pinned is False


@pytest.mark.cuda
def test_cuda_graph_buckets_answer_as_the_plain_path() -> None:
    config = _with("mnist", cuda_graphs="1")
    config.dynamic_batching.preferred_batch_size[:] = [4, 8]
    session = ort.InferenceSession(
        str(MODELS / "mnist" / "1" / "model.onnx"),
        providers=[("CUDAExecutionProvider", {"enable_cuda_graph": "1"})],
    )
    instance = make_instance(session, config)
    assert isinstance(instance, GraphInstance)
    expected = PlainInstance(_session("mnist")).run(_digit_jobs(0, [1, 2]), ["logits"])
    got = instance.run(_digit_jobs(0, [1, 2]), ["logits"])  # 3 rows in the bucket of 4
    for left, right in zip(got.per_job, expected.per_job, strict=True):
        np.testing.assert_allclose(left["logits"], right["logits"], atol=1e-3)
    _, pinned = host_buffer((4, 3), np.dtype(np.float32), pinned=True)
    assert pinned
