"""Settings: bundled TOML, then CLOUT_CONFIG, then CLOUT_* env; secrets only from env."""

from __future__ import annotations

import base64

from pathlib import Path

import pytest

from plugin.settings import SettingsError, load_settings


def test_defaults_need_no_settings(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert s.redis_url is None
    assert s.data_dir == tmp_path / ".clout"
    assert s.database_url == f"sqlite:///{tmp_path / '.clout' / 'clout.db'}"
    assert s.enabled_desks == ("generic",)
    assert s.config.influence.source == "snapshot"
    assert s.secrets.api_token is None
    assert s.weights.spend == 0.25
    assert s.desk_priorities("generic")["normal"] == "Normal"
    assert s.config.service.embedded_redis_fsync == "always"


def test_config_file_then_env_override(tmp_path: Path):
    cfg = tmp_path / "clout.toml"
    cfg.write_text("[ranking.weights]\nspend = 0.5\ninfluence = 0.1\n[queue]\nname = 'from-file'\n")
    s = load_settings({"CLOUT_CONFIG": str(cfg), "CLOUT_RANKING__WEIGHTS__SPEND": "0.7"})
    assert s.weights.spend == 0.7  # env beats file
    assert s.weights.influence == 0.1  # file beats bundled default
    assert s.weights.renewal == 0.25  # untouched default
    assert s.config.queue.name == "from-file"
    assert s.sources[-1] == str(cfg.resolve())


def test_env_values_are_typed_like_toml():
    s = load_settings({"CLOUT_DELIVERY__RETRY_BASE_SECONDS": "1.5", "CLOUT_QUEUE__NAME": "plain-string",
                       "CLOUT_DESKS__GENERIC__ENABLED": "true"})
    assert s.config.delivery.retry_base_seconds == 1.5
    assert s.desk("generic").enabled is True
    assert s.config.queue.name == "plain-string"


def test_service_urls_and_data_dir_from_env(tmp_path: Path):
    s = load_settings({"REDIS_URL": "redis://127.0.0.1:6379/3", "DATABASE_URL": "postgresql://x/y",
                       "CLOUT_DATA_DIR": str(tmp_path / "d")})
    assert s.redis_url == "redis://127.0.0.1:6379/3"
    assert s.database_url == "postgresql://x/y"
    assert s.data_dir == tmp_path / "d"


@pytest.mark.parametrize(
    "env, key, allowed",
    [
        ({"CLOUT_RANKING__WEIGHTS__SPEND": "-1"}, "ranking.weights.spend", "greater than or equal to 0"),
        ({"CLOUT_RANKING__WEIGHTS__SPEND": "lots"}, "ranking.weights.spend", "valid number"),
        ({"CLOUT_SERVICE__LOG_LEVEL": "LOUD"}, "service.log_level", "'DEBUG'"),
        ({"CLOUT_RANKING__TIERS__URGENT": "0.1"}, "ranking.tiers", "urgent >= high >= normal"),
        ({"CLOUT_WEBHOOKS__DEDUPE_TTL_SECONDS": "60"}, "webhooks.dedupe_ttl_seconds", "259200"),
        ({"CLOUT_RANKING__WEIGHTS__SPEEND": "0.3"}, "ranking.weights.speend", "unknown setting"),
        ({"CLOUT_RANKING__WEIGHTS__SPEND": "inf"}, "ranking.weights.spend", "finite number"),
        ({"CLOUT_QUEUE__JOB_TIMEOUT": "true"}, "queue.job_timeout", "valid integer"),
        ({"CLOUT_WEBHOOKS__TIMESTAMP_TOLERANCE_SECONDS": "86400"}, "webhooks.timestamp_tolerance_seconds",
         "less than or equal to 3600"),
    ],
)
def test_bad_setting_names_key_and_what_is_allowed(env, key, allowed):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert key in str(err.value)
    assert allowed in str(err.value)


def test_bad_env_name_shape_is_explained():
    with pytest.raises(SettingsError, match="CLOUT_<SECTION>__<KEY>"):
        load_settings({"CLOUT_SPEND": "1"})


def test_missing_and_broken_config_files(tmp_path: Path):
    with pytest.raises(SettingsError, match="file not found"):
        load_settings({"CLOUT_CONFIG": str(tmp_path / "nope.toml")})
    broken = tmp_path / "broken.toml"
    broken.write_text("[ranking\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings({"CLOUT_CONFIG": str(broken)})


def test_secrets_cannot_come_from_the_file(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[service]\napi_token = 'oops'\n")
    with pytest.raises(SettingsError, match="service.api_token: unknown setting"):
        load_settings({"CLOUT_CONFIG": str(cfg)})


STRONG_WHSEC = "whsec_" + base64.b64encode(b"SECRET2-" + bytes(range(40))).decode()


def test_secrets_from_env_never_show_in_repr():
    token = "tok-SECRET-1-" + "x" * 32
    s = load_settings({"CLOUT_API_TOKEN": token, "CLOUT_WEBHOOK_SECRET_GENERIC": STRONG_WHSEC})
    assert s.secrets.api_token == token
    assert s.secrets.webhook_secret("generic") == STRONG_WHSEC
    for text in (repr(s), repr(s.secrets), str(s.secrets), repr(s.secrets.api_token)):
        assert "SECRET" not in text and STRONG_WHSEC[6:20] not in text


@pytest.mark.parametrize("value, problem", [
    ("whsec_", "decodes to 0 byte(s); at least 24"),            # an empty key signs for anyone
    ("whsec_AAAA", "decodes to 3 byte(s); at least 24"),        # three zero bytes
    ("whsec_abc", "must be whsec_<base64>"),                    # not base64: refused, not used as text
    ("whsec_" + base64.b64encode(b"k" * 23).decode(), "decodes to 23 byte(s)"),
    ("", "is set but empty"),
    ("   ", "is set but empty"),
])
def test_weak_webhook_secrets_are_refused_at_start(value: str, problem: str):
    with pytest.raises(SettingsError) as err:
        load_settings({"CLOUT_WEBHOOK_SECRET_GENERIC": value})
    text = str(err.value)
    assert "CLOUT_WEBHOOK_SECRET_GENERIC" in text and problem in text
    if value.strip() and value != "whsec_":
        assert value not in text and value[6:] not in text


def test_a_strong_webhook_secret_is_accepted_with_or_without_the_prefix():
    raw = base64.b64encode(b"k" * 24).decode()
    for value in ("whsec_" + raw, raw):
        assert load_settings({"CLOUT_WEBHOOK_SECRET_GENERIC": value}).secrets.webhook_secret("generic")


@pytest.mark.parametrize("token, problem", [
    ("", "is set but empty"), ("short-token", "is too short"), ("x" * 31, "is too short")])
def test_weak_api_tokens_are_refused_at_start(token: str, problem: str):
    with pytest.raises(SettingsError) as err:
        load_settings({"CLOUT_API_TOKEN": token})
    text = str(err.value)
    assert f"CLOUT_API_TOKEN {problem}" in text and "at least 32 characters" in text
    if token:
        assert token not in text
    assert load_settings({"CLOUT_API_TOKEN": "y" * 32}).secrets.api_token == "y" * 32


def test_every_weak_secret_is_named_at_once():
    with pytest.raises(SettingsError) as err:
        load_settings({"CLOUT_WEBHOOK_SECRET_GENERIC": "whsec_AAAA", "CLOUT_API_TOKEN": "abc"})
    assert "CLOUT_WEBHOOK_SECRET_GENERIC" in str(err.value) and "CLOUT_API_TOKEN" in str(err.value)


def test_desk_mapping_must_cover_every_tier(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[desks.generic.priorities]\nurgent = 'P1'\nhihg = 'P2'\n")
    with pytest.raises(SettingsError, match="desks.generic.priorities.*unknown hihg"):
        load_settings({"CLOUT_CONFIG": str(cfg)})


@pytest.mark.parametrize("toml, message", [
    ("[desks.mydesk]\nenabled = true\n", "desks.mydesk: unknown desk; known desks: generic"),
    ("[desks.generic]\nenabled = 'yes'\n", "desks.generic.enabled: Input should be a valid boolean"),
    ("[desks.generic]\nflush_windo_ms = 5\n", "desks.generic.flush_windo_ms: unknown setting"),
    ("[desks.generic]\nflush_window_ms = -1\n", "desks.generic.flush_window_ms"),
    ("[crm]\nconnector = 'local'\n", "crm: this section was replaced by [desks.<desk>]"),
])
def test_bad_desk_settings_name_the_key(tmp_path: Path, toml: str, message: str):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(SettingsError) as err:
        load_settings({"CLOUT_CONFIG": str(cfg)})
    assert message in str(err.value)


def test_a_desk_is_validated_by_its_own_settings_class():
    from connectors.crm.local import GenericDeskSettings

    s = load_settings({"CLOUT_DESKS__GENERIC__FLUSH_WINDOW_MS": "250",
                       "CLOUT_DESKS__GENERIC__WRITE_DEADLINE_SECONDS": "60"})
    assert isinstance(s.desk("generic"), GenericDeskSettings)
    assert s.desk("generic").flush_window_ms == 250
    assert s.write_deadline("generic") == 60
    assert load_settings({}).write_deadline("generic") == 3600  # the [delivery] default


def test_weights_version_changes_with_weights():
    a = load_settings({}).weights.version()
    b = load_settings({"CLOUT_RANKING__WEIGHTS__SPEND": "0.3"}).weights.version()
    assert a != b and len(a) == 12
    assert a == load_settings({}).weights.version()


def test_misplaced_secrets_are_not_echoed(tmp_path: Path):
    with pytest.raises(SettingsError) as err:
        load_settings({"CLOUT_WEBHOOKS__SECRET_GENERIC": "whsec_SUPERSECRETVALUE"})
    assert "webhooks.secret_generic: unknown setting" in str(err.value)
    assert "SUPERSECRET" not in str(err.value)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[webhooks]\nsecret = 'whsec_FILESECRET'\n")
    with pytest.raises(SettingsError) as err:
        load_settings({"CLOUT_CONFIG": str(cfg)})
    assert "FILESECRET" not in str(err.value)


def test_unreadable_config_paths_are_settings_errors(tmp_path: Path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({"CLOUT_CONFIG": str(tmp_path)})
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings({"CLOUT_CONFIG": str(binary)})
