from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MaskEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASK_ENCODING_RAW: _ClassVar[MaskEncoding]
    MASK_ENCODING_PNG: _ClassVar[MaskEncoding]
MASK_ENCODING_RAW: MaskEncoding
MASK_ENCODING_PNG: MaskEncoding

class Image(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("pixels", "height", "width", "channels")
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    pixels: bytes
    height: int
    width: int
    channels: int
    def __init__(self, pixels: _Optional[bytes] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "model_version", "images", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    top_k: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., top_k: _Optional[int] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("label", "index", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    index: int
    score: float
    def __init__(self, label: _Optional[str] = ..., index: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("model", "model_version", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("model", "model_version", "images", "score_threshold", "max_detections")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    score_threshold: float
    max_detections: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., score_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "label", "index", "score")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    box: Box
    label: str
    index: int
    score: float
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., label: _Optional[str] = ..., index: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Detections(_message.Message):
    __slots__ = ("detections", "width", "height")
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    width: int
    height: int
    def __init__(self, detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("model", "model_version", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    results: _containers.RepeatedCompositeFieldContainer[Detections]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Detections, _Mapping]]] = ...) -> None: ...

class SegmentRequest(_message.Message):
    __slots__ = ("model", "model_version", "images", "mask_encoding")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MASK_ENCODING_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    mask_encoding: MaskEncoding
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., mask_encoding: _Optional[_Union[MaskEncoding, str]] = ...) -> None: ...

class Mask(_message.Message):
    __slots__ = ("height", "width", "encoding", "data", "labels")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    encoding: MaskEncoding
    data: bytes
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., encoding: _Optional[_Union[MaskEncoding, str]] = ..., data: _Optional[bytes] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("model", "model_version", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    results: _containers.RepeatedCompositeFieldContainer[Mask]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Mask, _Mapping]]] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("model", "model_version", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class Character(_message.Message):
    __slots__ = ("text", "box", "score")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    text: str
    box: Box
    score: float
    def __init__(self, text: _Optional[str] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., score: _Optional[float] = ...) -> None: ...

class Reading(_message.Message):
    __slots__ = ("text", "characters", "width", "height")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    text: str
    characters: _containers.RepeatedCompositeFieldContainer[Character]
    width: int
    height: int
    def __init__(self, text: _Optional[str] = ..., characters: _Optional[_Iterable[_Union[Character, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("model", "model_version", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    results: _containers.RepeatedCompositeFieldContainer[Reading]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("name", "versions", "task", "ready", "image_height", "image_width", "image_channels", "labels")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    task: str
    ready: bool
    image_height: int
    image_width: int
    image_channels: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ..., task: _Optional[str] = ..., ready: bool = ..., image_height: _Optional[int] = ..., image_width: _Optional[int] = ..., image_channels: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ...) -> None: ...
