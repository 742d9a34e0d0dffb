"""Resource bounds on a model config, so that neither a config.pbtxt nor a load call's override
can ask a server for more sessions, threads or queue room than its operator allows."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from ..protocol.errors import ModelLoadError
from ..runtime.session_options import session_tuning
from ..settings import ServerSettings

MAX_QUEUE_SIZE = 1 << 20


def check_resources(config: mc.ModelConfig, settings: ServerSettings) -> None:
    instances = sum(max(group.count, 1) for group in config.instance_group) or 1
    if instances > settings.max_instances:
        raise ModelLoadError(
            f"instance_group asks for {instances} instances; this server allows at most "
            f"{settings.max_instances} (--max-instances)"
        )
    for group in config.instance_group:
        if group.count < 0 or any(gpu < 0 for gpu in group.gpus):
            raise ModelLoadError("instance_group count and gpus must not be negative")
    # Thread counts, execution mode and graph level: checked as the sessions will read them.
    session_tuning(config, 0, settings.max_intra_op_threads)
    if not 0 <= config.max_batch_size <= settings.max_batch_size_limit:
        raise ModelLoadError(
            f"max_batch_size {config.max_batch_size} is outside 0..{settings.max_batch_size_limit}"
            " (--max-batch-size-limit)"
        )
    batching = config.dynamic_batching
    policies = [batching.default_queue_policy, *batching.priority_queue_policy.values()]
    for policy in policies:
        if policy.max_queue_size > MAX_QUEUE_SIZE:
            raise ModelLoadError(
                f"max_queue_size {policy.max_queue_size} is above {MAX_QUEUE_SIZE}"
            )
    if batching.priority_levels > 1024:
        raise ModelLoadError(f"priority_levels {batching.priority_levels} is above 1024")
