"""Open Inference Protocol gRPC messages <-> the data plane's types. Raw input bytes are
passed on without a copy; outputs always go back in raw_output_contents."""

from __future__ import annotations

from tritonclient.grpc import service_pb2 as pb

from ..protocol import codecs
from ..protocol.errors import InvalidInput
from ..protocol.types import (
    IndexEntry,
    InferRequest,
    InferResponse,
    InputTensor,
    ModelMetadata,
    Pair,
    Parameter,
    RegionRef,
    RequestedOutput,
    TensorMetadata,
    VersionStatistics,
    region_ref,
)


def parameters(message_map) -> dict[str, Parameter]:
    values: dict[str, Parameter] = {}
    if not len(message_map):
        return values  # most messages carry none; iterating protobuf's empty map still costs
    for key, parameter in message_map.items():
        kind = parameter.WhichOneof("parameter_choice")
        if kind is not None:
            values[key] = getattr(parameter, kind)
    return values


def _region(kind: str, name: str, message_map) -> RegionRef | None:
    """Its shared memory parameters, read only where it names a region (most tensors don't)."""
    if "shared_memory_region" not in message_map:
        return None
    return region_ref(f"{kind} '{name}'", parameters(message_map))


def infer_request(message: pb.ModelInferRequest) -> InferRequest:
    """Each protobuf field read costs here (microseconds on the one-caller path): repeated
    fields are copied out once with a slice, which is cheaper than iterating them."""
    raw = message.raw_input_contents
    tensors = message.inputs[:]
    regions = [_region("input", tensor.name, tensor.parameters) for tensor in tensors]
    carried = sum(region is None for region in regions)  # inputs not in shared memory
    if raw and len(raw) != carried:
        raise InvalidInput(
            f"request has {carried} inputs outside shared memory but {len(raw)} "
            "raw_input_contents; either every such input is raw or none is"
        )
    inputs, next_raw = [], 0
    for tensor, region in zip(tensors, regions, strict=True):
        values, content = None, None
        if region is not None:
            pass  # the data plane reads it from the region
        elif raw:
            content, next_raw = raw[next_raw], next_raw + 1
        else:
            field = codecs.contents_field(tensor.datatype)
            if tensor.datatype == "FP16":  # a protocol datatype without a contents field
                raise InvalidInput(
                    f"input '{tensor.name}': FP16 has no typed contents field; "
                    "send it in raw_input_contents"
                )
            # An unknown datatype has no field either: decoding names it.
            values = getattr(tensor.contents, field) if field else ()
        inputs.append(
            InputTensor(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=tuple(tensor.shape[:]),
                raw=content,
                values=values,
                region=region,
            )
        )
    outputs = []
    for output in message.outputs[:] if len(message.outputs) else ():
        k = 0
        if "classification" in output.parameters:
            param = output.parameters["classification"]
            k = param.int64_param if param.WhichOneof("parameter_choice") == "int64_param" else 0
            if k <= 0:
                raise InvalidInput(
                    f"output '{output.name}': the classification parameter must be a positive "
                    "int64 class count"
                )
        region = _region("output", output.name, output.parameters)
        outputs.append(RequestedOutput(output.name, k, region=region))
    return InferRequest(
        model=message.model_name,
        version=message.model_version,
        id=message.id,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters(message.parameters),
    )


def infer_response(response: InferResponse) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(
        model_name=response.model, model_version=response.version, id=response.id
    )
    for output in response.outputs:
        array = output.array
        tensor = message.outputs.add(name=output.name, datatype=output.datatype, shape=array.shape)
        if output.region is not None:  # written there; an empty entry keeps the order
            tensor.parameters["shared_memory_region"].string_param = output.region.region
            tensor.parameters["shared_memory_byte_size"].int64_param = output.region.byte_size
            if output.region.offset:
                tensor.parameters["shared_memory_offset"].int64_param = output.region.offset
            message.raw_output_contents.append(b"")
        else:
            message.raw_output_contents.append(codecs.tensor_bytes(array, output.datatype))
    return message


FINAL_FLAG = "triton_final_response"
EMPTY_FINAL = "triton_enable_empty_final_response"


def stream_response(
    response: InferResponse, flag_final: bool
) -> pb.ModelStreamInferResponse | None:
    """One response of a stream. `flag_final` (the request set triton_enable_empty_final_response):
    each carries triton_final_response, and a stream's end is sent as an empty final response;
    without it, that end is not sent, as Triton does."""
    if not response.outputs and not flag_final:
        return None
    message = infer_response(response)
    if flag_final:
        message.parameters[FINAL_FLAG].bool_param = response.final
    return pb.ModelStreamInferResponse(infer_response=message)


def metadata(model: ModelMetadata) -> pb.ModelMetadataResponse:
    def describe(tensors: list[TensorMetadata]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
        return [
            pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
            for t in tensors
        ]

    return pb.ModelMetadataResponse(
        name=model.name,
        versions=model.versions,
        platform=model.platform,
        inputs=describe(model.inputs),
        outputs=describe(model.outputs),
    )


def _duration(pair: Pair) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=pair[0], ns=pair[1])


def statistics(view: VersionStatistics) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=view.name,
        version=view.version,
        last_inference=view.last_inference,
        inference_count=view.inference_count,
        execution_count=view.execution_count,
        inference_stats=pb.InferStatistics(
            **{key: _duration(pair) for key, pair in view.requests.items()}
        ),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=size, **{key: _duration(pair) for key, pair in durations.items()}
            )
            for size, durations in view.batches.items()
        ],
    )


def index_entry(row: IndexEntry) -> pb.RepositoryIndexResponse.ModelIndex:
    return pb.RepositoryIndexResponse.ModelIndex(
        name=row.name, version=row.version, state=row.state, reason=row.reason
    )
