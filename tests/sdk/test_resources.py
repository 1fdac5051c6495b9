from typing import Any

import pytest
from pydantic import ValidationError

from flash import (
    CpuInstanceType,
    CpuLiveServerless,
    CpuServerlessEndpoint,
    GpuGroup,
    LiveServerless,
    ScalerType,
    ServerlessEndpoint,
)
from flash.runtime import resources as runtime_resources
from flash.sdk.resources import CONFIG_TYPES, validate_config


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


ALL_CONFIGS = [LiveServerless, CpuLiveServerless, ServerlessEndpoint, CpuServerlessEndpoint]


@pytest.mark.parametrize("config", ALL_CONFIGS)
@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("team/gpu", "'/'"),
        ("a\\b", "'\\\\'"),
        ("gpu?x", "'?'"),
        ("gpu#1", "'#'"),
        ("50%", "'%'"),
        ("bell\x01", "'\\x01'"),
        ("tab\there", "'\\t'"),
        ("line\nbreak", "'\\n'"),
    ],
)
def test_a_name_that_cannot_be_in_a_url_is_refused_at_construction(
    config: type[LiveServerless], name: str, shown: str
) -> None:
    with pytest.raises(ValidationError) as info:
        config(name=name)
    [error] = info.value.errors()
    assert error["loc"] == ("name",)
    assert f"contains {shown}, which cannot be part of the endpoint's URL" in error["msg"]


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_a_name_too_long_for_a_handler_file_is_refused(config: type[LiveServerless]) -> None:
    # It failed the build with the OS's "File name too long" for handler_<name>.py.
    with pytest.raises(ValueError, match=r"^invalid \w+: name: name is 300 characters long,"):
        validate_config(config.__name__, {"name": "a" * 300})
    assert config(name="a" * 128).name == "a" * 128


@pytest.mark.parametrize("variable", ["FLASH_SIGNING_KEY", "FLASH_ALLOW_UNSIGNED"])
def test_an_env_that_would_weaken_signing_is_refused(variable: str) -> None:
    # An endpoint's env is applied over the platform's: FLASH_ALLOW_UNSIGNED=1 there let its
    # workers unpickle unsigned input, with no word from the build.
    with pytest.raises(ValueError) as info:
        validate_config("CpuLiveServerless", {"name": "c", "env": {variable: "sekret-1234"}})
    assert str(info.value).startswith(f"invalid CpuLiveServerless: env: {variable} is ")
    assert "sekret-1234" not in str(info.value)
    # Made in a script, pydantic's own error shows no input value either (env holds secrets).
    with pytest.raises(ValidationError) as made:
        CpuLiveServerless(name="c", env={variable: "sekret-1234", "OTHER": "token-5678"})
    assert "sekret-1234" not in str(made.value) and "token-5678" not in str(made.value)


@pytest.mark.parametrize("config", ALL_CONFIGS)
@pytest.mark.parametrize("name", [".", ".."])
def test_a_dot_segment_name_is_refused(config: type[LiveServerless], name: str) -> None:
    with pytest.raises(ValidationError) as info:
        config(name=name)
    [error] = info.value.errors()
    assert error["loc"] == ("name",)
    assert "relative path step" in error["msg"]
    with pytest.raises(ValueError, match=r"^invalid \w+: name: name '\.\.?' is a relative path"):
        validate_config(config.__name__, {"name": name})


@pytest.mark.parametrize("name", ["...", "a.b", ".hidden", "gpu-1_a", "Vision-Model.v2"])
def test_names_that_fit_in_a_url_are_kept(name: str) -> None:
    assert LiveServerless(name=name).to_manifest()["name"] == name


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ("ANY", "any"),
        ("any", "any"),
        ("Any", "any"),
        (GpuGroup.ANY, "any"),
        ("BLACKWELL_180", "BLACKWELL_180"),
        ("blackwell_180", "BLACKWELL_180"),
        ("Ampere_16", "AMPERE_16"),
    ],
)
def test_gpu_groups_by_name_or_value_in_any_case(given: str, recorded: str) -> None:
    cfg = LiveServerless(name="g", gpus=[given])  # type: ignore[list-item]
    assert cfg.to_manifest()["gpus"] == [recorded]
    assert validate_config("ServerlessEndpoint", {"name": "g", "gpus": [given]}).to_manifest()[
        "gpus"
    ] == [recorded]


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ("cpu3g-2-8", "cpu3g-2-8"),
        ("CPU3G-2-8", "cpu3g-2-8"),
        ("CPU5C_4_8", "cpu5c-4-8"),
        ("cpu3c_1_2", "cpu3c-1-2"),
        (CpuInstanceType.CPU3G_8_32, "cpu3g-8-32"),
    ],
)
def test_cpu_instance_types_by_name_or_value_in_any_case(given: str, recorded: str) -> None:
    cfg = CpuLiveServerless(name="c", instanceIds=[given])  # type: ignore[list-item]
    assert cfg.to_manifest()["instanceIds"] == [recorded]


def test_the_scaler_type_in_any_case() -> None:
    cfg = LiveServerless(name="g", scalerType="request_count")  # type: ignore[arg-type]
    assert cfg.to_manifest()["scalerType"] == "REQUEST_COUNT"
    with pytest.raises(ValueError, match=r"scalerType: 'DELAY' is not a ScalerType"):
        validate_config("LiveServerless", {"name": "g", "scalerType": "DELAY"})


def test_an_unknown_gpu_or_instance_type_names_the_entry_and_the_choices() -> None:
    with pytest.raises(ValueError) as gpu:
        validate_config("LiveServerless", {"name": "g", "gpus": ["ANY", "H100"]})
    assert str(gpu.value).startswith("invalid LiveServerless: gpus.1: 'H100' is not a GpuGroup")
    assert "choose one of: ANY, AMPERE_16," in str(gpu.value)
    with pytest.raises(ValueError, match=r"instanceIds\.0: 'cpu9' is not a CpuInstanceType"):
        validate_config("CpuLiveServerless", {"name": "c", "instanceIds": ["cpu9"]})
    # A look-alike letter (the Kelvin sign) is not taken for an ASCII one.
    with pytest.raises(ValidationError, match="gpus"):
        LiveServerless(name="g", gpus=["BLAC\u212aWELL_96"])  # type: ignore[list-item]


@pytest.mark.parametrize("type_name", sorted(CONFIG_TYPES))
@pytest.mark.parametrize(
    "values",
    [
        {},
        {"workersMax": 2, "env": {"MODEL": "bert", "HF": "{{ RUNPOD_SECRET_hf }}"}},
        {"workers_min": 1, "workers_max": "4", "idle_timeout": 7.0, "scaler_type": "request_count"},
        {"execution_timeout_ms": 1000, "scaler_value": True, "concurrency": 3},
        {"locations": "EU", "network_volume_id": "vol", "image_name": "me/img:1"},
        {"scalerType": ScalerType.REQUEST_COUNT, "networkVolumeId": "v", "imageName": "i"},
    ],
)
def test_the_worker_s_config_stand_in_reads_as_the_config(
    type_name: str, values: dict[str, Any]
) -> None:
    # In a built archive, `flash` is the runtime's: its configs are stand-ins that must
    # read as the pydantic configs do where the code runs locally.
    extra: dict[str, Any] = (
        {"gpus": [GpuGroup.AMPERE_80, "hopper_141"], "gpu_count": 2}
        if CONFIG_TYPES[type_name].is_gpu
        else {"instance_ids": ("CPU5C_4_8", CpuInstanceType.CPU3C_1_2)}
    )
    for given in (values, {**values, **extra}):
        config = CONFIG_TYPES[type_name](name="e", **given)
        stub = getattr(runtime_resources, type_name)(name="e", **given)
        fields = ["name", *type(config).model_fields]
        assert {f: getattr(stub, f) for f in fields} == {f: getattr(config, f) for f in fields}
        assert repr(stub) == repr(config)
        assert stub.is_gpu == config.is_gpu
        assert stub == getattr(runtime_resources, type_name)(name="e", **given)
        assert stub != getattr(runtime_resources, type_name)(name="other", **given)
        with pytest.raises(AttributeError, match=f"'{type_name}' object has no attribute 'gpu'"):
            stub.gpu  # noqa: B018
        with pytest.raises(AttributeError, match="no attribute 'workers_max'"):
            stub.workers_max  # noqa: B018


def test_each_stand_in_has_a_fresh_env_and_lists() -> None:
    first = runtime_resources.LiveServerless(name="a")
    second = runtime_resources.LiveServerless(name="b")
    first.env["X"] = "1"
    first.gpus.append("AMPERE_16")
    assert (second.env, second.gpus) == ({}, [GpuGroup.ANY])
