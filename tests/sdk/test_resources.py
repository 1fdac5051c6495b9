import pytest
from pydantic import ValidationError

from flash import (
    CpuInstanceType,
    CpuLiveServerless,
    CpuServerlessEndpoint,
    GpuGroup,
    LiveServerless,
    ServerlessEndpoint,
)
from flash.sdk.resources import validate_config


def test_defaults_match_runpod() -> None:
    cfg = LiveServerless(name="gpu")
    assert (cfg.workersMin, cfg.workersMax, cfg.idleTimeout, cfg.concurrency) == (0, 3, 5, 1)
    assert cfg.gpus == ["any"]
    assert CpuLiveServerless(name="cpu").instanceIds == ["cpu3g-2-8"]


def test_camel_and_snake_case_are_the_same_field() -> None:
    camel = LiveServerless(name="g", workersMax=7, idleTimeout=9, executionTimeoutMs=1000)
    snake = LiveServerless(name="g", workers_max=7, idle_timeout=9, execution_timeout_ms=1000)
    assert camel == snake
    assert camel.to_manifest()["workersMax"] == 7


def test_enums_and_strings_both_accepted() -> None:
    cfg = ServerlessEndpoint(
        name="g", gpus=[GpuGroup.AMPERE_80, "HOPPER_141"], imageName="me/img:1"
    )
    assert cfg.to_manifest()["gpus"] == ["AMPERE_80", "HOPPER_141"]
    cpu = CpuServerlessEndpoint(name="c", instance_ids=[CpuInstanceType.CPU5C_4_8])
    assert cpu.to_manifest()["instanceIds"] == ["cpu5c-4-8"]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "g", "workersMin": 5, "workersMax": 2}, "workersMin"),
        ({"name": "g", "idleTimeout": -1}, "idleTimeout"),
        ({"name": "g", "executionTimeoutMs": -5}, "executionTimeoutMs"),
        ({"name": "g", "gpus": ["NOT_A_GPU"]}, "gpus"),
        ({"name": "g", "scalerType": "FASTEST"}, "scalerType"),
        ({"name": "g", "concurrency": 0}, "concurrency"),
        ({"name": "g", "workersMaximum": 3}, "workersMaximum"),
        ({"name": "g", "executionTimeoutMs": 10**400}, "executionTimeoutMs"),
        ({"name": "g", "executionTimeoutMs": 604_800_001}, "executionTimeoutMs"),
        ({"name": "g", "idleTimeout": 2**31}, "idleTimeout"),
        ({"name": "g", "gpuCount": 10**400}, "gpuCount"),
    ],
)
def test_invalid_values_name_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        LiveServerless(**values)  # type: ignore[arg-type]
    assert field in str(info.value)
    with pytest.raises(ValueError, match=field):
        validate_config("LiveServerless", values)


def test_cpu_config_rejects_gpu_fields() -> None:
    with pytest.raises(ValidationError, match="gpus"):
        CpuLiveServerless(name="c", gpus=["AMPERE_16"])  # type: ignore[call-arg]
