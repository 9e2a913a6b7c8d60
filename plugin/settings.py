"""One settings object for the whole service.

Layers, later wins: the bundled `config/clout.toml`, then the file named by
`CLOUT_CONFIG`, then `CLOUT_<SECTION>__<KEY>` environment variables. Secrets
are a separate, environment-only layer so they can never be committed in a
TOML file or echoed back in a validation error. This is the only module that
reads the environment; everything else receives a `Settings`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connectors.crm.base import DeskSettings
from ranking.weights import Weights

from . import bundled

ENV_PREFIX = "CLOUT_"
SECRET_ENV_PREFIX = "CLOUT_WEBHOOK_SECRET_"
# Environment names that are not nested config keys.
_RESERVED_ENV = {"CLOUT_CONFIG", "CLOUT_API_TOKEN", "CLOUT_DATA_DIR"}
# Social API credentials (environment only): secret name -> variable.
SOCIAL_SECRET_ENV = {"x_bearer_token": "CLOUT_X_BEARER_TOKEN",
                     "youtube_api_key": "CLOUT_YOUTUBE_API_KEY",
                     "github_token": "CLOUT_GITHUB_TOKEN"}
_RESERVED_ENV |= set(SOCIAL_SECRET_ENV.values())
# The pages' admin login and (optional) session signing key: environment only.
_RESERVED_ENV |= {"CLOUT_ADMIN_TOKEN", "CLOUT_SESSION_SECRET"}


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the key."""


class _Section(BaseModel):
    # strict: `true` is not 1 and "5" is not 5; TOML and env values arrive already typed.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ServiceConfig(_Section):
    data_dir: str = ".clout"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "always": every accepted webhook is on disk before the 202 (survives a SIGKILLed
    # redis-server and a power cut); "everysec": faster, may lose up to a second on a crash.
    embedded_redis_fsync: Literal["always", "everysec"] = "always"


class QueueConfig(_Section):
    name: str = Field("clout", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    batch_size: int = Field(200, ge=1, le=10_000)
    # PostgreSQL: a big batch is decided in this many parts at once, on threads, so the
    # worker's Python runs while the server executes the other part's statements.
    decide_parts: int = Field(2, ge=1, le=8)
    job_timeout: int = Field(300, ge=1)
    result_ttl: int = Field(3600, ge=0)


class DeliveryConfig(_Section):
    """How accepted events become desk writes, and how failures are retried."""

    reconcile_interval_seconds: int = Field(10, ge=1, le=300)
    lease_seconds: int = Field(30, ge=5, le=3600)
    stale_after_seconds: int = Field(15, ge=1, le=3600)
    max_event_attempts: int = Field(5, ge=1, le=100)
    retry_base_seconds: float = Field(2.0, gt=0, le=3600)
    retry_max_seconds: float = Field(300.0, gt=0, le=86_400)
    write_deadline_seconds: int = Field(3600, ge=1)
    parked_retry_seconds: int = Field(900, ge=10)
    rerank_interval_seconds: int = Field(300, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "DeliveryConfig":
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds must be >= retry_base_seconds")
        return self


class WebhooksConfig(_Section):
    max_body_bytes: int = Field(1_048_576, ge=1024)
    timestamp_tolerance_seconds: int = Field(300, ge=1, le=3600)
    dedupe_ttl_seconds: int = Field(345_600, ge=72 * 3600)


class WebConfig(_Section):
    """The HTTP server `clout run` and `clout web` use (waitress; see plugin/web_server.py)."""

    # A request (headers and body) must arrive within this many seconds, and an idle
    # connection is closed after it; slow or stalled clients are cut off, not waited on.
    request_timeout_seconds: int = Field(30, ge=1, le=3600)
    # Threads running the app; slow clients never hold one (requests are buffered first).
    threads: int = Field(8, ge=1, le=256)
    # Open connections at once; more wait in the listen backlog.
    connection_limit: int = Field(256, ge=1, le=10_000)


class InfluenceConfig(_Section):
    source: str = "snapshot"
    snapshot_path: str = "demo/social_snapshot.json"
    # A customer's computed score, and each (network, handle) profile, is reused this long.
    cache_ttl_seconds: int = Field(86_400, ge=0)
    # A handle the network says doesn't exist (or that is invalid) is not asked again for this long.
    not_found_ttl_seconds: int = Field(3600, ge=0)
    # Customers with open tickets whose score is older than this are looked up again by the
    # scheduled refresh (0 = no scheduled refresh).
    refresh_after_seconds: int = Field(43_200, ge=0)
    refresh_interval_seconds: int = Field(600, ge=0)
    timeout_connect_seconds: float = Field(3.05, gt=0, le=60)
    timeout_read_seconds: float = Field(10.0, gt=0, le=300)
    max_retries: int = Field(2, ge=0, le=10)
    # A network asking us to wait longer than this (429, rate-limit headers) is skipped
    # for the rest of the batch instead of waited on.
    max_wait_seconds: float = Field(30.0, ge=0, le=600)
    # Engagement samples (recent posts) cost a request per handle: at most this many per
    # lookup, largest audiences first, and only for audiences of sample_min_followers or more
    # (a large audience without engagement evidence is damped as possibly bought).
    sample_budget: int = Field(20, ge=0, le=10_000)
    sample_min_followers: int = Field(1000, ge=0)
    # Mastodon instances that may resolve to private addresses (e.g. your own, on a LAN).
    mastodon_allowlist: list[str] = Field(default_factory=list)
    # Base URL per network (x, bluesky, github, reddit, youtube), for a proxy or a test server.
    endpoints: dict[str, str] = Field(default_factory=dict)


class SocialConfig(_Section):
    """Social mentions: `POST /webhooks/social` from a listening tool, and the brand-term poller."""

    # Accept mentions at /webhooks/social (the secret is CLOUT_WEBHOOK_SECRET_SOCIAL).
    enabled: bool = True
    # What the poller searches for: Bluesky's post search, and each term as a Mastodon
    # hashtag (spaces and punctuation dropped). Empty: no poller.
    brand_terms: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list)
    networks: list[Literal["bluesky", "mastodon"]] = Field(
        default_factory=lambda: ["bluesky", "mastodon"])
    # Mastodon servers whose public tag timeline is read (host names).
    mastodon_instances: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=lambda: ["mastodon.social"])
    # How often the brand terms are searched (0 = never).
    poll_interval_seconds: int = Field(300, ge=0)
    # Most posts one poll takes per term and network (pages of the API's maximum).
    max_posts_per_poll: int = Field(100, ge=1, le=1000)
    # A mention at least this strong a complaint (0..1) escalates to the customer's
    # ticket; unset: ranking.flags.complaint_threshold.
    complaint_threshold: float | None = Field(None, ge=0, le=1)


class GestureConfig(_Section):
    label: str = Field(min_length=1, max_length=200)
    # What one gesture costs, in ranking.currency.base (counted against the budget).
    value: float = Field(0.0, ge=0, le=1e9)
    # Most spent on this gesture per calendar month (UTC); unset: no cap.
    monthly_budget: float | None = Field(None, ge=0, le=1e12)


class GoodwillRule(_Section):
    """Suggest `gesture` when complaint >= min_complaint and (spend percentile >=
    min_spend_percentile or influence >= min_influence); an unset bound is not checked,
    both unset: the complaint alone decides."""

    gesture: str = Field(min_length=1, max_length=64)
    min_complaint: float = Field(0.6, ge=0, le=1)
    min_spend_percentile: float | None = Field(None, ge=0, le=1)
    min_influence: float | None = Field(None, ge=1, le=100)


class GoodwillConfig(_Section):
    """Goodwill gestures suggested for loud complaints from valuable or influential customers."""

    enabled: bool = True
    gestures: dict[str, GestureConfig] = Field(default_factory=lambda: {
        "credit_disputed_charge": GestureConfig(label="Credit the disputed charge", value=25.0,
                                                monthly_budget=500.0),
        "personal_apology": GestureConfig(label="Call with a personal apology")})
    # Tried in order; the first whose conditions hold and whose gesture has budget left wins.
    rules: list[GoodwillRule] = Field(default_factory=lambda: [
        GoodwillRule(gesture="credit_disputed_charge", min_complaint=0.6,
                     min_spend_percentile=0.9, min_influence=60),
        GoodwillRule(gesture="personal_apology", min_complaint=0.5,
                     min_spend_percentile=0.75, min_influence=40)])

    @model_validator(mode="after")
    def _known_gestures(self) -> "GoodwillConfig":
        unknown = sorted({r.gesture for r in self.rules} - set(self.gestures))
        if unknown:
            raise ValueError(f"rules name unknown gesture(s) {', '.join(unknown)}; define them "
                             "under [goodwill.gestures.<name>]")
        return self


class WeightsConfig(_Section):
    influence: float = Field(0.20, ge=0)
    spend: float = Field(0.25, ge=0)
    renewal: float = Field(0.25, ge=0)
    complaint: float = Field(0.15, ge=0)
    waiting: float = Field(0.15, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> "WeightsConfig":
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one weight must be > 0")
        return self


class TiersConfig(_Section):
    # "fixed": the thresholds below; "share": thresholds follow the recent scores of open
    # tickets so that about `*_share` of them land in each tier.
    mode: Literal["fixed", "share"] = "fixed"
    urgent: float = Field(0.60, ge=0, le=1)
    # > 0: the guard "influence alone never reaches Urgent" asks the rest of the score for
    # at least `high`; with 0 nothing would be asked.
    high: float = Field(0.40, gt=0, le=1)
    normal: float = Field(0.20, ge=0, le=1)
    urgent_share: float = Field(0.05, ge=0, le=1)
    high_share: float = Field(0.20, ge=0, le=1)
    normal_share: float = Field(0.40, ge=0, le=1)
    # With mode "share": the open tickets' scores are summarised this often (seconds).
    share_refresh_seconds: int = Field(300, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "TiersConfig":
        if not self.urgent >= self.high >= self.normal:
            raise ValueError("thresholds must satisfy urgent >= high >= normal")
        if self.urgent_share + self.high_share + self.normal_share > 1:
            raise ValueError("urgent_share + high_share + normal_share must be at most 1")
        return self


class TimingConfig(_Section):
    renewal_horizon_days: float = Field(90, gt=0)
    sla_hours: float = Field(24, gt=0)
    # Waited this many SLAs -> at least High, whatever the weights (waiting weight 0
    # included); 0 turns the lift off.
    waiting_floor_slas: float = Field(2.0, ge=0, le=100)
    # After a contract's end, renewal urgency falls from 1 to 0 over this many days.
    renewal_grace_days: float = Field(30, ge=0, le=3650)


class FlagsConfig(_Section):
    vip_spend_percentile: float = Field(0.90, ge=0, le=1)
    influencer_score: float = Field(60, ge=1, le=100)
    renewal_soon_days: float = Field(30, ge=0)
    aged_hours: float = Field(48, ge=0)
    complaint_threshold: float = Field(0.5, ge=0, le=1)


class CurrencyConfig(_Section):
    """Spend is compared in `base`; `rates` says what one unit of each currency is worth in it."""

    base: str = Field("USD", pattern=r"^[A-Z]{3}$")
    rates: dict[str, float] = Field(default_factory=lambda: {
        "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067, "CAD": 0.73, "AUD": 0.66,
        "CHF": 1.13, "SEK": 0.095, "NOK": 0.093, "DKK": 0.145, "INR": 0.012, "BRL": 0.18,
        "MXN": 0.055, "CNY": 0.14, "SGD": 0.74, "NZD": 0.60, "PLN": 0.25, "ZAR": 0.055})

    @model_validator(mode="after")
    def _sane(self) -> "CurrencyConfig":
        bad = [k for k, v in self.rates.items()
               if len(k) != 3 or not k.isalpha() or not k.isupper() or not 0 < v < 1e6]
        if bad:
            raise ValueError(f"rates: each key a 3-letter upper-case code with a rate > 0; "
                             f"check {', '.join(sorted(bad))}")
        return self


class RankingConfig(_Section):
    book_refresh_seconds: int = Field(300, ge=0)
    weights: WeightsConfig = WeightsConfig()
    tiers: TiersConfig = TiersConfig()
    timing: TimingConfig = TimingConfig()
    flags: FlagsConfig = FlagsConfig()
    currency: CurrencyConfig = CurrencyConfig()


class PagesConfig(_Section):
    """The server-rendered pages under /pages (agent queue, customer, admin weights)."""

    enabled: bool = True
    page_size: int = Field(50, ge=5, le=500)
    # With JavaScript on, the live part of a page is re-fetched this often (0 = never).
    refresh_seconds: int = Field(10, ge=0, le=3600)
    # A page session (cookie) lasts this long after login.
    session_hours: float = Field(12, gt=0, le=24 * 30)
    # How long the one-time login link (printed by `clout demo`) can be used; once.
    login_link_minutes: int = Field(15, ge=1, le=24 * 60)
    # "auto": the session cookie is Secure when the request came over https.
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    # A ticket's link in its own desk, per desk: {id}, {source} and the desk's own
    # settings (e.g. {instance_url}); a desk without one links to the ticket's page here.
    desk_links: dict[str, str] = Field(default_factory=lambda: {
        "salesforce": "{instance_url}/lightning/r/Case/{id}/view"})


class FileConfig(_Section):
    service: ServiceConfig = ServiceConfig()
    queue: QueueConfig = QueueConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    web: WebConfig = WebConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    influence: InfluenceConfig = InfluenceConfig()
    social: SocialConfig = SocialConfig()
    goodwill: GoodwillConfig = GoodwillConfig()
    ranking: RankingConfig = RankingConfig()
    pages: PagesConfig = PagesConfig()
    # Each desk validates its own section (see `_desks`); here it is only a table per desk.
    desks: dict[str, dict[str, Any]] = Field(default_factory=dict)


class _Secret(str):
    """A str whose repr never shows the value, so it cannot leak into logs."""

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True)
class Secrets:
    api_token: str | None = None
    webhook_secrets: Mapping[str, str] = field(default_factory=dict)
    desk_secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    social: Mapping[str, str] = field(default_factory=dict)  # see SOCIAL_SECRET_ENV
    # The pages: the admin token logs in with the admin role (the API token: agent);
    # the session secret signs page cookies (derived from the tokens when unset).
    admin_token: str | None = None
    session_secret: str | None = None

    def webhook_secret(self, source: str) -> str | None:
        return self.webhook_secrets.get(source)

    def desk(self, name: str) -> Mapping[str, str]:
        return self.desk_secrets.get(name, {})

    def __repr__(self) -> str:
        return (
            f"Secrets(api_token={'set' if self.api_token else 'unset'}, "
            f"webhook_secrets={sorted(self.webhook_secrets)}, "
            f"desk_secrets={ {k: sorted(v) for k, v in self.desk_secrets.items()} }, "
            f"social={sorted(self.social)}, "
            f"admin_token={'set' if self.admin_token else 'unset'}, "
            f"session_secret={'set' if self.session_secret else 'unset'})"
        )


@dataclass(frozen=True)
class Settings:
    """Everything a Clout process needs to know, resolved once at start-up."""

    config: FileConfig
    config_dir: Path
    data_dir: Path
    redis_url: str | None
    database_url: str
    secrets: Secrets
    sources: tuple[str, ...] = ()  # files that were layered, for `clout config`
    desks: Mapping[str, DeskSettings] = field(default_factory=dict)  # every registered desk

    @property
    def enabled_desks(self) -> tuple[str, ...]:
        return tuple(name for name, desk in sorted(self.desks.items()) if desk.enabled)

    def desk(self, name: str) -> DeskSettings:
        try:
            return self.desks[name]
        except KeyError:
            raise SettingsError(f"desks.{name}: unknown desk; known desks: "
                                f"{', '.join(sorted(self.desks)) or 'none'}") from None

    def write_deadline(self, desk: str) -> int:
        own = self.desk(desk).write_deadline_seconds
        return own if own is not None else self.config.delivery.write_deadline_seconds

    @property
    def weights(self) -> Weights:
        r = self.config.ranking
        return Weights(
            influence=r.weights.influence,
            spend=r.weights.spend,
            renewal=r.weights.renewal,
            complaint=r.weights.complaint,
            waiting=r.weights.waiting,
            tier_urgent=r.tiers.urgent,
            tier_high=r.tiers.high,
            tier_normal=r.tiers.normal,
            renewal_horizon_days=r.timing.renewal_horizon_days,
            sla_hours=r.timing.sla_hours,
            waiting_floor_slas=r.timing.waiting_floor_slas,
            renewal_grace_days=r.timing.renewal_grace_days,
            vip_spend_percentile=r.flags.vip_spend_percentile,
            influencer_score=r.flags.influencer_score,
            renewal_soon_days=r.flags.renewal_soon_days,
            aged_hours=r.flags.aged_hours,
            complaint_threshold=r.flags.complaint_threshold,
        )

    def desk_priorities(self, desk: str) -> dict[str, str]:
        return dict(self.desk(desk).priorities)

    def redis_key(self, *parts: str) -> str:
        """Clout's Redis keys, namespaced by queue so deployments can share one Redis."""
        return ":".join(("clout", self.config.queue.name, *parts))

    def resolve_config_path(self, value: str) -> Path:
        """A relative path is looked for next to the config file, then among the bundled
        defaults (so a copied clout.toml still finds the demo snapshot)."""
        path = Path(value)
        if path.is_absolute():
            return path
        own = self.config_dir / path
        if own.exists():
            return own
        try:
            shipped = bundled.config_dir() / path
        except bundled.BundledDefaultsMissing:
            return own
        return shipped if shipped.exists() else own


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path, what: str = "CLOUT_CONFIG") -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{what}: file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


def _parse_env_value(raw: str) -> Any:
    """Read an env value as a TOML value when it is one, else as a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _desk_secret_names() -> set[str]:
    """Environment variables desks read their secrets from (never settings overrides)."""
    from connectors import crm

    return {var for name in crm.available() for var in crm.spec(name).settings.secret_env.values()}


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    secret_names = _desk_secret_names()
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in _RESERVED_ENV or name in secret_names:
            continue
        if name.startswith(SECRET_ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        if len(path) < 2 or not all(path):
            raise SettingsError(
                f"{name}: environment overrides are CLOUT_<SECTION>__<KEY> "
                "(for example CLOUT_RANKING__WEIGHTS__SPEND=0.4)"
            )
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _parse_env_value(raw)
    return overrides


_SECRET_WORDS = ("secret", "token", "password", "key", "credential")


def _format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        key = ".".join([prefix] * bool(prefix) + [str(p) for p in err["loc"]]) or "(root)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown setting"
        elif err["type"] == "literal_error":
            message = message.replace("Input should be", "allowed:")
        shown = err.get("input")
        # Never echo what might be a secret someone put in the wrong place.
        hide = (err["type"] in ("extra_forbidden", "missing") or isinstance(shown, (dict, list))
                or any(word in key.lower() for word in _SECRET_WORDS)
                or (isinstance(shown, str) and shown.startswith("whsec_")))
        lines.append(f"{key}: {message}" + ("" if hide else f" (got {shown!r})"))
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve the settings from files and the environment; raise `SettingsError` on bad input."""
    env = os.environ if env is None else env
    try:
        bundled_dir = bundled.config_dir()
    except bundled.BundledDefaultsMissing as exc:
        raise SettingsError(str(exc)) from None
    data = _read_toml(bundled_dir / "clout.toml", "bundled defaults")
    sources = [str(bundled_dir / "clout.toml")]
    config_dir = bundled_dir
    if env.get("CLOUT_CONFIG"):
        user_path = Path(env["CLOUT_CONFIG"]).expanduser().resolve()
        data = _deep_merge(data, _read_toml(user_path))
        sources.append(str(user_path))
        config_dir = user_path.parent
    data = _deep_merge(data, _env_overrides(env))
    if env.get("CLOUT_DATA_DIR"):
        data = _deep_merge(data, {"service": {"data_dir": env["CLOUT_DATA_DIR"]}})
    if "crm" in data:
        raise SettingsError("crm: this section was replaced by [desks.<desk>] (each desk names its "
                            "own connector); remove [crm] and enable desks instead")
    try:
        config = FileConfig.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_format_validation_error(exc)) from None
    desks = _desks(config.desks)

    data_dir = Path(config.service.data_dir).expanduser().resolve()
    database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'clout.db'}"
    _check_secret_strength(env, desks)
    webhook_secrets = {
        name[len(SECRET_ENV_PREFIX):].lower(): _Secret(value)
        for name, value in env.items()
        if name.startswith(SECRET_ENV_PREFIX) and value
    }
    desk_secrets = {
        name: {key: _Secret(env[var]) for key, var in type(desk).secret_env.items() if env.get(var)}
        for name, desk in desks.items()
    }
    secrets = Secrets(
        api_token=_Secret(env["CLOUT_API_TOKEN"]) if env.get("CLOUT_API_TOKEN") else None,
        webhook_secrets=webhook_secrets,
        desk_secrets=desk_secrets,
        social={name: _Secret(env[var]) for name, var in SOCIAL_SECRET_ENV.items() if env.get(var)},
        admin_token=_Secret(env["CLOUT_ADMIN_TOKEN"]) if env.get("CLOUT_ADMIN_TOKEN") else None,
        session_secret=(_Secret(env["CLOUT_SESSION_SECRET"]) if env.get("CLOUT_SESSION_SECRET")
                        else None),
    )
    return Settings(
        config=config,
        config_dir=config_dir,
        data_dir=data_dir,
        redis_url=env.get("REDIS_URL") or None,
        database_url=database_url,
        secrets=secrets,
        sources=tuple(sources),
        desks=desks,
    )


MIN_API_TOKEN_LENGTH = 32


def _check_secret_strength(env: Mapping[str, str], desks: Mapping[str, DeskSettings]) -> None:
    """Refuse to start with a secret that is set but weak: it would make forgery easy.

    Each desk's webhook module knows what its signing secrets look like; the API
    token needs length. Messages name the variable and the rule, never the value.
    """
    from connectors import crm
    from webhooks import secret_problem

    problems = []
    for name in desks:
        var = f"{SECRET_ENV_PREFIX}{name.upper()}"
        if var not in env:
            continue
        value = env[var]
        problem = ("is set but empty" if not value.strip()
                   else secret_problem(crm.spec(name).webhook, value))
        if problem:
            problems.append(f"{var} {problem}")
    social = env.get(f"{SECRET_ENV_PREFIX}SOCIAL")  # /webhooks/social: Standard Webhooks rules
    if social is not None:
        from webhooks.social import secret_problem as social_problem

        problem = "is set but empty" if not social.strip() else social_problem(social)
        if problem:
            problems.append(f"{SECRET_ENV_PREFIX}SOCIAL {problem}")
    for var, off in (("CLOUT_API_TOKEN", "the API"), ("CLOUT_ADMIN_TOKEN", "the admin pages"),
                     ("CLOUT_SESSION_SECRET", "it (page cookies are then signed with a key "
                                              "derived from the tokens)")):
        token = env.get(var)
        if token is not None and len(token.strip()) < MIN_API_TOKEN_LENGTH:
            problems.append(
                f"{var} {'is set but empty' if not token.strip() else 'is too short'}: at "
                f"least {MIN_API_TOKEN_LENGTH} characters are required (e.g. python3 -c "
                f"\"import secrets; print(secrets.token_urlsafe(32))\"); unset it to disable {off}")
    if env.get("CLOUT_ADMIN_TOKEN") and env.get("CLOUT_ADMIN_TOKEN") == env.get("CLOUT_API_TOKEN"):
        problems.append("CLOUT_ADMIN_TOKEN must differ from CLOUT_API_TOKEN (the admin role "
                        "would be anyone's with the API token)")
    if problems:
        raise SettingsError("weak secrets refused:\n  " + "\n  ".join(problems))


def _desks(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, DeskSettings]:
    """Validate `[desks.<name>]` with each registered desk's own settings class."""
    from connectors import crm

    unknown = sorted(set(raw) - set(crm.available()))
    if unknown:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(
            f"desks.{name}: unknown desk; known desks: {', '.join(crm.available())}"
            for name in unknown))
    out: dict[str, DeskSettings] = {}
    problems: list[str] = []
    for name in crm.available():
        model = crm.spec(name).settings
        try:
            out[name] = model.model_validate(dict(raw.get(name, {})))
        except ValidationError as exc:
            problems.append(_format_validation_error(exc, prefix=f"desks.{name}")
                            .removeprefix("invalid settings:\n  "))
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    return out
