"""Who may see the pages: login with a token, a signed session cookie, CSRF, one-time links.

- The API token (`CLOUT_API_TOKEN`) logs in as an agent, the admin token
  (`CLOUT_ADMIN_TOKEN`) as an admin. Tokens are compared in constant time.
- The session is Flask's signed cookie (HttpOnly, SameSite=Lax, Secure over
  https). Its key is `CLOUT_SESSION_SECRET`, or derived by HMAC from the tokens,
  so every process and gunicorn worker agrees without sharing state, and
  changing a token ends the sessions it opened (each session also carries a
  fingerprint of its token, checked on every request).
- Every POST under /pages must carry the session's CSRF token in a hidden field.
- `login_link()` makes a signed, short-lived URL that logs in once: its nonce
  is remembered in Redis when used (SET NX with a TTL a little longer than the
  link's life), so a second use is refused in every process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from functools import wraps
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, abort, current_app, g, has_request_context, redirect,
                   render_template, request, session, url_for)
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from markupsafe import Markup, escape

from ..settings import Settings

ROLES = ("agent", "admin")
SESSION_KEY = "clout_pages"
CSRF_KEY = "clout_csrf"
CSRF_FIELD = "csrf_token"
_LINK_SALT = "clout-pages-login-link"


# -- keys ------------------------------------------------------------------------------

def session_key(settings: Settings) -> str:
    """The key page cookies are signed with; the same in every process with the same secrets."""
    s = settings.secrets
    if s.session_secret:
        return str(s.session_secret)
    if not (s.api_token or s.admin_token):
        # Nobody can log in; any key will do (and none is guessable).
        return secrets.token_hex(32)
    material = f"{s.api_token or ''}\n{s.admin_token or ''}".encode()
    return hmac.new(b"clout pages session key v1", material, hashlib.sha256).hexdigest()


def _role_token(settings: Settings, role: str) -> str | None:
    token = settings.secrets.admin_token if role == "admin" else settings.secrets.api_token
    return str(token) if token else None


def _fingerprint(settings: Settings, role: str) -> str | None:
    """Ties a session to the token it was opened with: a new token ends old sessions."""
    token = _role_token(settings, role)
    if token is None:
        return None
    return hmac.new(session_key(settings).encode(), f"{role}:{token}".encode(),
                    hashlib.sha256).hexdigest()[:32]


def role_for_token(settings: Settings, given: str) -> str | None:
    """'admin', 'agent' or None; both comparisons always run (constant time)."""
    given_b = given.strip().encode()
    found = None
    for role in ("admin", "agent"):
        token = _role_token(settings, role)
        ok = hmac.compare_digest(given_b, token.encode()) if token else False
        if ok and found is None and given_b:
            found = role
    return found


# -- the session -----------------------------------------------------------------------

def _settings() -> Settings:
    return current_app.extensions["clout"].settings


def start_session(role: str) -> None:
    settings = _settings()
    session.pop(CSRF_KEY, None)  # a fresh CSRF token after login
    session[SESSION_KEY] = {"role": role, "at": int(time.time()),
                            "fp": _fingerprint(settings, role)}


def end_session() -> None:
    session.pop(SESSION_KEY, None)
    session.pop(CSRF_KEY, None)


def current_role() -> str | None:
    """The logged-in role, or None when there is no valid, unexpired session."""
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict) or data.get("role") not in ROLES:
        return None
    settings = _settings()
    at = data.get("at")
    if not isinstance(at, int) or time.time() - at > settings.config.pages.session_hours * 3600:
        return None
    expected = _fingerprint(settings, data["role"])
    if expected is None or not isinstance(data.get("fp"), str) \
            or not hmac.compare_digest(data["fp"], expected):
        return None
    return data["role"]


def _to_login():
    target = request.full_path if request.method == "GET" else request.path
    return redirect(url_for("clout_pages.login", next=target.rstrip("?")), code=303)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Any logged-in role; otherwise a redirect to the login form (HTML, never JSON)."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        g.role = current_role()
        if g.role is None:
            return _to_login()
        return view(*args, **kwargs)

    return wrapper


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """The admin role; an agent gets a 403 page saying so."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        g.role = current_role()
        if g.role is None:
            return _to_login()
        if g.role != "admin":
            abort(403, "This page needs the admin role: log in with the admin token.")
        return view(*args, **kwargs)

    return wrapper


# -- CSRF ------------------------------------------------------------------------------

def csrf_token() -> str:
    token = session.get(CSRF_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return token


def csrf_field() -> Markup:
    """The hidden form field every POST form under /pages carries."""
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(csrf_token())}">')


def check_csrf() -> None:
    """400 unless the form's CSRF token is this session's (run for every POST under /pages)."""
    expected = session.get(CSRF_KEY)
    given = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not expected:
        abort(400, "Your session has no form token (it expired, or cookies are off): "
                   "reload the page and try again.")
    if not given:
        abort(400, "The form was sent without its CSRF token: reload the page and try again.")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        abort(400, "The form's CSRF token does not match your session: reload the page and "
                   "try again.")


# -- one-time login links ---------------------------------------------------------------

def _link_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(session_key(settings), salt=_LINK_SALT)


def login_link(settings: Settings, base_url: str, role: str = "admin") -> str:
    """A URL that logs in as `role` once, within `[pages] login_link_minutes`.

    Raises ValueError when that role has no token configured (nobody could hold it).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if _role_token(settings, role) is None:
        var = "CLOUT_ADMIN_TOKEN" if role == "admin" else "CLOUT_API_TOKEN"
        raise ValueError(f"no {role} login is possible: {var} is not set")
    token = _link_serializer(settings).dumps({"r": role, "n": secrets.token_urlsafe(16)})
    return f"{base_url.rstrip('/')}/pages/login/once?t={token}"


def _read_link(settings: Settings, token: str) -> dict[str, str]:
    """The link's role and nonce; aborts 400 with why when it can't be used."""
    max_age = settings.config.pages.login_link_minutes * 60
    try:
        data = _link_serializer(settings).loads(token, max_age=max_age)
    except SignatureExpired:
        abort(400, "This login link has expired; ask for a new one or log in with a token.")
    except BadSignature:
        abort(400, "This login link is not valid (it was cut short, or the server's tokens "
                   "changed); log in with a token.")
    if not isinstance(data, dict) or data.get("r") not in ROLES or not isinstance(data.get("n"), str):
        abort(400, "This login link is not valid; log in with a token.")
    if _role_token(settings, data["r"]) is None:
        abort(400, "This login link's role can no longer log in on this server.")
    return data


def _nonce_key(settings: Settings, nonce: str) -> str:
    return settings.redis_key("pages", "login-link", hashlib.sha256(nonce.encode()).hexdigest())


def _link_used(settings: Settings, nonce: str) -> bool:
    return bool(current_app.extensions["clout"].runtime.redis.exists(_nonce_key(settings, nonce)))


def _use_link(settings: Settings, nonce: str) -> bool:
    """True the first time only (in any process): the nonce is kept while a link could live."""
    ttl = settings.config.pages.login_link_minutes * 60 + 60
    redis = current_app.extensions["clout"].runtime.redis
    return bool(redis.set(_nonce_key(settings, nonce), "1", nx=True, ex=ttl))


# -- views ------------------------------------------------------------------------------

def safe_next(value: str | None) -> str:
    """Only a path of ours may follow a login (no open redirect to another site)."""
    default = url_for("clout_pages.queue")
    if not value or not value.startswith("/pages/") or "\\" in value or "//" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def register(bp: Blueprint) -> None:
    bp.before_request(_csrf_on_posts)

    @bp.context_processor
    def _auth_context() -> dict[str, Any]:
        return {"csrf_field": csrf_field, "role": g.get("role")}

    @bp.get("/login")
    def login():
        g.role = current_role()
        return render_template("pages/login.html", next=safe_next(request.args.get("next")),
                               error=None, title="Log in")

    @bp.post("/login")
    def login_post():
        settings = _settings()
        token = request.form.get("token", "")
        nxt = safe_next(request.form.get("next"))
        if len(token) > 1024:
            abort(400, "That token is far too long to be one of ours.")
        role = role_for_token(settings, token)
        if role is None:
            error = ("Logins are off: neither CLOUT_API_TOKEN nor CLOUT_ADMIN_TOKEN is set on "
                     "the server." if not (settings.secrets.api_token or settings.secrets.admin_token)
                     else "That token is not valid.")
            return render_template("pages/login.html", next=nxt, error=error, title="Log in"), 401
        start_session(role)
        return redirect(nxt, code=303)

    @bp.post("/logout")
    def logout():
        end_session()
        return redirect(url_for("clout_pages.login"), code=303)

    @bp.get("/login/once")
    def login_once():
        settings = _settings()
        token = request.args.get("t", "")
        data = _read_link(settings, token)
        if _link_used(settings, data["n"]):
            abort(400, "This login link was already used; links work once. Log in with a token.")
        g.role = current_role()
        # A button, not an automatic login: link previewers and prefetchers don't use it up.
        return render_template("pages/login_once.html", token=token, link_role=data["r"],
                               title="Log in")

    @bp.post("/login/once")
    def login_once_post():
        settings = _settings()
        data = _read_link(settings, request.form.get("t", ""))
        if not _use_link(settings, data["n"]):
            abort(400, "This login link was already used; links work once. Log in with a token.")
        start_session(data["r"])
        return redirect(url_for("clout_pages.queue"), code=303)

    @bp.get("/")
    def index():
        return redirect(url_for("clout_pages.queue"))


def _csrf_on_posts() -> None:
    if request.method == "POST":
        check_csrf()


# -- the session cookie's Secure attribute -----------------------------------------------

_SESSIONLESS_PREFIXES = ("/webhooks/", "/api/")
_SESSIONLESS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class _PagesSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure when the request came over https ("auto")."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def open_session(self, app: Flask, request: Any) -> Any:
        # Webhooks and the JSON API never use a session: skip the cookie's signature check
        # (about 40 us, a fifth of the webhook view's own time). A host app's routes and the
        # pages keep theirs.
        path = request.path
        if path.startswith(_SESSIONLESS_PREFIXES) or path in _SESSIONLESS_PATHS:
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        if self.mode == "always":
            return True
        if self.mode == "never":
            return False
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or (
            has_request_context() and request.is_secure)


def install_session_interface(app: Flask, mode: str) -> None:
    """Only over Flask's own default: a host app's session interface is left alone."""
    if type(app.session_interface) is SecureCookieSessionInterface:
        app.session_interface = _PagesSessionInterface(mode)
