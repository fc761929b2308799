import pytest

from agent.settings import MapperClientSettings, SettingsError, TelemetrySettings, load


def test_defaults_when_nothing_given() -> None:
    s = load(MapperClientSettings, [], {})
    assert s.mapper_url == "http://network-mapper:9090/query"
    assert s.timeout == 10.0


def test_flag_beats_environment_beats_default() -> None:
    env = {"OTTERIZE_MAPPER_API": "http://env:1/query", "NETWORK_MAPPER_TIMEOUT": "3"}
    s = load(MapperClientSettings, ["--mapper-url", "http://flag:2/query"], env)
    assert s.mapper_url == "http://flag:2/query"
    assert s.timeout == 3.0


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("0", False), ("TRUE", True), ("on", True)])
def test_telemetry_switch(text: str, expected: bool) -> None:
    assert load(TelemetrySettings, [], {"OTTERIZE_TELEMETRY_ENABLED": text}).enabled is expected
    assert load(TelemetrySettings, [f"--enabled={text}"], {}).enabled is expected


def test_bad_value_names_its_source() -> None:
    with pytest.raises(SettingsError, match="OTTERIZE_TELEMETRY_ENABLED"):
        load(TelemetrySettings, [], {"OTTERIZE_TELEMETRY_ENABLED": "maybe"})
    with pytest.raises(SettingsError, match="--timeout"):
        load(MapperClientSettings, ["--timeout", "soon"], {})
