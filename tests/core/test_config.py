"""Settings: arguments over environment over defaults, one clear error per bad value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import lunatrace
from lunatrace import api
from lunatrace.core.config import DEFAULT_API_URL, ENVIRONMENT_VARIABLES, Config, ConfigError, mask_key

PRIVATE = "11111111-aaaa-4bbb-8ccc-222222222222"
PUBLIC = "33333333-dddd-4eee-8fff-444444444444"


def test_defaults_without_environment() -> None:
    config = Config.resolve(env={})
    assert config.project_key is None and not config.uses_server
    assert config.api_url == DEFAULT_API_URL == "https://api.lunary.ai"
    assert config.ingest_url == "https://api.lunary.ai/v1/runs/ingest"
    assert config.enabled and not config.verbose
    assert config.sample_rate == 1.0
    assert config.max_field_bytes == 64_000
    assert config.store_path == Path.home() / ".lunatrace" / "events.db"


def test_private_key_wins_over_public_and_app_id() -> None:
    env = {"LUNARY_PUBLIC_KEY": PUBLIC, "LUNARY_PRIVATE_KEY": PRIVATE, "LUNARY_APP_ID": "app"}
    assert Config.resolve(env=env).project_key == PRIVATE
    assert Config.resolve(env={"LUNARY_PUBLIC_KEY": PUBLIC, "LUNARY_APP_ID": "a"}).project_key == PUBLIC
    assert Config.resolve(env={"LUNARY_APP_ID": PUBLIC}).project_key == PUBLIC
    assert Config.resolve(env={"LUNARY_PRIVATE_KEY": "", "LUNARY_PUBLIC_KEY": PUBLIC}).project_key == PUBLIC


def test_arguments_win_over_environment() -> None:
    env = {
        "LUNARY_PRIVATE_KEY": PRIVATE,
        "LUNARY_API_URL": "http://env.example:3333",
        "LUNATRACE_SAMPLE_RATE": "0.5",
        "LUNATRACE_ENABLED": "false",
    }
    config = Config.resolve(
        env=env, project_key=PUBLIC, api_url="https://arg.example/", sample_rate=0.25, enabled=True
    )
    assert config.project_key == PUBLIC
    assert config.api_url == "https://arg.example"  # trailing slash dropped
    assert config.ingest_url == "https://arg.example/v1/runs/ingest"
    assert config.sample_rate == 0.25
    assert config.enabled is True
    # None means "not given": the environment applies.
    assert Config.resolve(env=env, sample_rate=None).sample_rate == 0.5


def test_every_environment_variable_is_read(tmp_path: Path) -> None:
    env = {
        "LUNARY_API_URL": "http://localhost:3333",
        "LUNARY_VERBOSE": "yes",
        "LUNATRACE_ENABLED": "0",
        "LUNATRACE_STORE": str(tmp_path / "s.db"),
        "LUNATRACE_QUEUE_SIZE": "7",
        "LUNATRACE_QUEUE_MAX_BYTES": "123456",
        "LUNATRACE_BATCH_MAX_EVENTS": "8",
        "LUNATRACE_BATCH_MAX_BYTES": "9000",
        "LUNATRACE_FLUSH_INTERVAL": "0.25",
        "LUNATRACE_MAX_FIELD_BYTES": "1000",
        "LUNATRACE_SAMPLE_RATE": "0",
        "LUNATRACE_RETRY_TIMEOUT": "3",
        "LUNATRACE_HTTP_TIMEOUT": "4",
        "LUNATRACE_EXIT_TIMEOUT": "1.5",
    }
    config = Config.resolve(env=env)
    assert (config.api_url, config.verbose, config.enabled) == ("http://localhost:3333", True, False)
    assert config.store_path == tmp_path / "s.db"
    assert (config.queue_size, config.batch_max_events, config.batch_max_bytes) == (7, 8, 9000)
    assert config.queue_max_bytes == 123456
    assert (config.flush_interval, config.max_field_bytes, config.sample_rate) == (0.25, 1000, 0.0)
    assert (config.retry_timeout, config.http_timeout, config.exit_timeout) == (3.0, 4.0, 1.5)
    # Every setting except the key has a variable in this test.
    named = {name for names in ENVIRONMENT_VARIABLES.values() for name in names}
    assert named - set(env) == {
        "LUNARY_PRIVATE_KEY",
        "LUNARY_PUBLIC_KEY",
        "LUNARY_APP_ID",
        "LUNATRACE_VERBOSE",
    }


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("api_url", "api.lunary.ai", "api_url"),
        ("api_url", "ftp://x.example", "api_url"),
        ("queue_size", -5, "queue_size"),
        ("queue_size", 0, "queue_size"),
        ("batch_max_bytes", "lots", "batch_max_bytes"),
        ("max_field_bytes", -1, "max_field_bytes"),
        ("max_field_bytes", 10, "max_field_bytes"),
        ("enabled", "maybe", "enabled"),
        ("verbose", "2", "verbose"),
        ("sample_rate", 1.5, "sample_rate"),
        ("sample_rate", -0.1, "sample_rate"),
        ("sample_rate", "nan", "sample_rate"),
        ("flush_interval", 0, "flush_interval"),
        ("http_timeout", "inf", "http_timeout"),
        ("store_path", " ", "store_path"),
    ],
)
def test_bad_argument_names_the_setting(setting: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        Config.resolve(env={}, **{setting: value})
    assert info.value.setting == setting


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LUNARY_API_URL", "not a url"),
        ("LUNATRACE_QUEUE_SIZE", "-1"),
        ("LUNATRACE_ENABLED", "nope"),
        ("LUNATRACE_SAMPLE_RATE", "2"),
        ("LUNARY_VERBOSE", "loud"),
    ],
)
def test_bad_environment_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.resolve(env={variable: value})


def test_unknown_setting_and_bad_mask_are_refused() -> None:
    with pytest.raises(ConfigError, match="sample_rat"):
        Config.resolve(env={}, sample_rat=0.5)
    with pytest.raises(ConfigError, match="mask"):
        Config.resolve(env={}, mask="not callable")


def test_repr_masks_the_key() -> None:
    config = Config.resolve(env={"LUNARY_PRIVATE_KEY": PRIVATE})
    for text in (repr(config), str(config), f"{config}"):
        assert PRIVATE not in text
        assert "1111…2222" in text
    assert mask_key(None) == "<none>"
    assert mask_key("short") == "****"


def test_a_bad_key_is_not_printed_whole() -> None:
    secret = "sk-lunary key with spaces 1234567890"
    with pytest.raises(ConfigError) as info:
        Config.resolve(env={"LUNARY_PRIVATE_KEY": secret})
    assert secret not in str(info.value)
    assert "LUNARY_PRIVATE_KEY" in str(info.value)


def test_configure_refuses_bad_values_and_keeps_the_previous_config() -> None:
    before = lunatrace.configure(sample_rate=0.5)
    with pytest.raises(ConfigError, match="sample_rate"):
        lunatrace.configure(sample_rate=3)
    assert lunatrace.get_tracer().config == before


def test_bad_environment_variable_drops_only_that_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LUNATRACE_QUEUE_SIZE", "-3")
    monkeypatch.setenv("LUNATRACE_SAMPLE_RATE", "0.75")
    monkeypatch.setenv("LUNARY_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LUNARY_PRIVATE_KEY", PRIVATE)
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        config = api.get_tracer().config  # must not raise into the app
    assert config.queue_size == Config().queue_size
    assert config.sample_rate == 0.75
    assert config.api_url == "http://127.0.0.1:9"
    assert config.project_key == PRIVATE
    assert "LUNATRACE_QUEUE_SIZE" in caplog.text
    assert PRIVATE not in caplog.text
