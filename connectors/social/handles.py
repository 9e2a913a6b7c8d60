"""Handles as people type them -> the one form each network looks up; plus the Mastodon host guard.

`normalise(network, raw)` accepts what support agents paste: `@Name`, profile
URLs (`https://x.com/Name`, `https://bsky.app/profile/alice.bsky.social`,
`https://fosstodon.org/@chen`, `github.com/name`, `reddit.com/user/name`,
`u/name`, `youtube.com/@handle`) and Mastodon's `user@instance` or
`@user@instance`. It returns a lower-case canonical form (the networks treat
handles case-insensitively), the same for every spelling, so it can key a
cache, and `normalise(n, normalise(n, h)) == normalise(n, h)`. Anything it
can't be sure of raises `InvalidHandle(reason)` (a `ValueError`) before any
request is made.

A Mastodon handle names the server we will connect to, so a handle must not
become a way into our own network. Two layers:

- here, without any network: the instance must be a DNS host name (after
  Unicode/IDNA mapping, so `１２７．０．０．１` is seen as `127.0.0.1`), never
  an IP literal in any notation (`2130706433`, `0x7f000001`, `0177.0.0.1`,
  `127.1`, `[::1]`, `::ffff:127.0.0.1`): a top-level label starting with a
  digit, a colon or a bracket is refused;
- at connect time (`resolve_public`, used by `connectors.social.http`): the
  name is resolved and EVERY address must be public (not loopback, private,
  link-local, multicast, reserved, unspecified, shared or otherwise
  non-global, IPv4 embedded in IPv6 included), unless the host is in the
  allowlist. The connection is then made to the address that was checked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlsplit

import idna

from connectors.social.base import NETWORKS

__all__ = [
    "InvalidHandle",
    "UnsafeHost",
    "canonical_host",
    "is_public_address",
    "normalise",
    "resolve_public",
]

MAX_RAW = 512

_X_NAME = re.compile(r"[A-Za-z0-9_]{1,15}")
_GITHUB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_REDDIT_NAME = re.compile(r"[A-Za-z0-9_-]{3,20}")
_YOUTUBE_NAME = re.compile(r"[A-Za-z0-9._-]{3,30}")
_MASTODON_USER = re.compile(r"[A-Za-z0-9_]{1,30}")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DID_PLC = re.compile(r"did:plc:[a-z2-7]{24}")
# atproto handle spec: syntactically valid but never a real handle
_BLUESKY_BAD_TLDS = {"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"}

_X_HOSTS = {"x.com", "twitter.com", "mobile.twitter.com", "mobile.x.com"}
_X_RESERVED = {"home", "i", "intent", "share", "search", "explore", "settings", "hashtag",
               "messages", "notifications", "login", "signup", "tos", "privacy", "compose"}
_HOSTS = {
    "x": _X_HOSTS,
    "bluesky": {"bsky.app"},
    "github": {"github.com"},
    "reddit": {"reddit.com", "old.reddit.com", "new.reddit.com", "np.reddit.com"},
    "youtube": {"youtube.com", "m.youtube.com"},
}
_BARE_URL = re.compile(
    r"(?:www\.)?(?:x\.com|twitter\.com|mobile\.twitter\.com|bsky\.app|github\.com|"
    r"(?:old\.|new\.|np\.)?reddit\.com|(?:m\.)?youtube\.com)/",
    re.IGNORECASE,
)


class InvalidHandle(ValueError):
    """A handle that can't be looked up; `reason` says why (safe to show and log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsafeHost(InvalidHandle):
    """A Mastodon instance that resolves to (or is) an address we must not connect to."""


# --------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------


def normalise(network: str, raw: str) -> str:
    """The canonical, lower-case handle for `network`; raises `InvalidHandle(reason)`."""
    if network not in NETWORKS:
        raise InvalidHandle(f"unknown network {network!r}")
    if not isinstance(raw, str):
        raise InvalidHandle("not a string")
    text = raw.strip()
    if not text:
        raise InvalidHandle("empty")
    if len(text) > MAX_RAW:
        raise InvalidHandle("too long")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text):
        raise InvalidHandle("contains spaces or control characters")
    return _NORMALISERS[network](text)


def _url_parts(text: str, network: str) -> tuple[str, list[str]] | None:
    """(host, path segments) if `text` is a profile URL, else None."""
    if "://" not in text:
        if not _BARE_URL.match(text):
            return None
        text = "https://" + text
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidHandle("not a valid URL") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise InvalidHandle("profile URLs must be http(s)")
    if parts.username is not None or parts.password is not None:
        raise InvalidHandle("profile URL must not carry credentials")
    host = host.lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    allowed = _HOSTS.get(network)
    if allowed is not None and host not in allowed:
        raise InvalidHandle(f"not a {network} profile URL")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    return host, segments


def _strip_at(text: str) -> str:
    return text[1:] if text.startswith("@") else text


def _x(text: str) -> str:
    url = _url_parts(text, "x")
    if url is not None:
        _, segments = url
        if not segments or segments[0].lower() in _X_RESERVED:
            raise InvalidHandle("URL does not name an X account")
        text = segments[0]
    name = _strip_at(text)
    if not _X_NAME.fullmatch(name):
        raise InvalidHandle("X usernames are 1-15 letters, digits or underscores")
    return name.lower()


def _bluesky(text: str) -> str:
    if text.lower().startswith("at://"):
        text = text[5:].split("/", 1)[0]
    url = _url_parts(text, "bluesky")
    if url is not None:
        _, segments = url
        if len(segments) < 2 or segments[0] != "profile":
            raise InvalidHandle("Bluesky profile URLs look like bsky.app/profile/<handle>")
        text = segments[1]
    name = _strip_at(text)
    lowered = name.lower()
    if lowered.startswith("did:"):
        if _DID_PLC.fullmatch(lowered):
            return lowered
        if lowered.startswith("did:web:"):
            return "did:web:" + _domain(lowered[8:], "did:web domain")
        raise InvalidHandle("unsupported DID (did:plc or did:web only)")
    domain = _domain(name, "Bluesky handle")
    if domain.rsplit(".", 1)[-1] in _BLUESKY_BAD_TLDS:
        raise InvalidHandle(f"Bluesky handles can't end in .{domain.rsplit('.', 1)[-1]}")
    return domain


def _domain(name: str, what: str) -> str:
    """A domain handle per the atproto rules: ASCII, 2+ labels, TLD starts with a letter."""
    if not name.isascii():
        raise InvalidHandle(f"{what} must be ASCII (punycode for international names)")
    lowered = name.lower()
    if len(lowered) > 253:
        raise InvalidHandle(f"{what} is longer than 253 characters")
    labels = lowered.split(".")
    if len(labels) < 2:
        raise InvalidHandle(f"{what} must be a domain name like alice.bsky.social")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidHandle(f"{what} has an invalid label (letters, digits, inner hyphens)")
    if not _TLD.fullmatch(labels[-1]):
        raise InvalidHandle(f"{what}'s last label must start with a letter")
    return lowered


def _mastodon(text: str) -> str:
    if "://" in text or ("/" in text and "@" not in text.split("/", 1)[0]):
        url = _url_parts(text if "://" in text else "https://" + text, "mastodon")
        assert url is not None
        host, segments = url
        if segments and segments[0].startswith("@"):
            user = segments[0][1:]
        elif len(segments) >= 2 and segments[0] == "users":
            user = segments[1]
        else:
            raise InvalidHandle("Mastodon profile URLs look like https://<instance>/@user")
        if "@" in user:  # a remote account viewed on another server: its own server counts
            user, host = user.split("@", 1)
        text = f"{user}@{host}"
    name = _strip_at(text)
    if name.count("@") != 1:
        raise InvalidHandle("Mastodon handles look like user@instance")
    user, host = name.split("@")
    if not _MASTODON_USER.fullmatch(user):
        raise InvalidHandle("Mastodon usernames are 1-30 letters, digits or underscores")
    return f"{user.lower()}@{canonical_host(host)}"


def _github(text: str) -> str:
    url = _url_parts(text, "github")
    if url is not None:
        _, segments = url
        if not segments:
            raise InvalidHandle("URL does not name a GitHub account")
        text = segments[0]
    name = _strip_at(text)
    if not _GITHUB_NAME.fullmatch(name):
        raise InvalidHandle(
            "GitHub names are 1-39 letters, digits or single inner hyphens"
        )
    return name.lower()


def _reddit(text: str) -> str:
    url = _url_parts(text, "reddit")
    if url is not None:
        _, segments = url
        if len(segments) < 2 or segments[0].lower() not in {"user", "u"}:
            raise InvalidHandle("Reddit profile URLs look like reddit.com/user/<name>")
        text = segments[1]
    else:
        lowered = text.lower()
        for prefix in ("/u/", "u/", "/user/", "user/"):
            if lowered.startswith(prefix):
                text = text[len(prefix):]
                break
    name = _strip_at(text)
    if not _REDDIT_NAME.fullmatch(name):
        raise InvalidHandle("Reddit usernames are 3-20 letters, digits, _ or -")
    return name.lower()


def _youtube(text: str) -> str:
    url = _url_parts(text, "youtube")
    if url is not None:
        _, segments = url
        if not segments or not segments[0].startswith("@"):
            raise InvalidHandle("only youtube.com/@handle URLs name a handle")
        text = segments[0]
    name = _strip_at(text)
    if not _YOUTUBE_NAME.fullmatch(name):
        raise InvalidHandle("YouTube handles are @ and 3-30 letters, digits, '.', '_' or '-'")
    return "@" + name.lower()


_NORMALISERS: dict[str, Callable[[str], str]] = {
    "x": _x,
    "bluesky": _bluesky,
    "mastodon": _mastodon,
    "github": _github,
    "reddit": _reddit,
    "youtube": _youtube,
}


# --------------------------------------------------------------------------
# Mastodon instances: names, then addresses
# --------------------------------------------------------------------------


def canonical_host(raw: str) -> str:
    """A DNS host name in canonical ASCII form; raises `InvalidHandle` for anything else.

    Unicode is mapped first (UTS #46: fullwidth digits, ideographic dots,
    circled letters), so a name can't hide an IP literal or `localhost`.
    """
    host = raw.strip()
    if not host:
        raise InvalidHandle("instance is empty")
    if any(ch in host for ch in "[]:%/\\?#@"):
        raise InvalidHandle("instance must be a host name (no IP literal, port or path)")
    try:
        ascii_host = idna.encode(host, uts46=True, std3_rules=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidHandle("instance is not a valid host name") from None
    ascii_host = ascii_host.lower().rstrip(".")
    if len(ascii_host) > 253 or not ascii_host:
        raise InvalidHandle("instance is not a valid host name")
    labels = ascii_host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidHandle("instance is not a valid host name")
    if not _TLD.fullmatch(labels[-1]):
        # 127.0.0.1, 2130706433, 0x7f000001, 0177.0.0.1, 127.1: all end in a digit-led label
        raise InvalidHandle("instance must be a host name, not an IP address")
    return ascii_host


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    packed = ip.packed  # IPv4-compatible ::a.b.c.d (deprecated, still routable by some stacks)
    if packed[:12] == bytes(12) and int(ip) > 1:
        found.append(ipaddress.IPv4Address(packed[12:]))
    return found


def is_public_address(address: str) -> tuple[bool, str]:
    """(True, "") for a global unicast address; else (False, what it is).

    An IPv6 address carrying an IPv4 one (mapped, 6to4, Teredo, NAT64,
    IPv4-compatible) is judged by the IPv4 address inside it first.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False, "unparseable address"
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(ip):
            ok, what = is_public_address(str(inner))
            if not ok:
                return False, f"{what}, IPv4 inside IPv6"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    for what, hit in checks:
        if hit:
            return False, what
    return True, ""


Resolver = Callable[..., list]


def resolve_public(
    host: str,
    port: int,
    *,
    allowlist: Iterable[str] = (),
    resolver: Resolver | None = None,
) -> list[str]:
    """The addresses of `host`, all checked public (unless allowlisted); raises `UnsafeHost`.

    Every address getaddrinfo returns is checked, not just the first, so a
    name with one public and one private record is refused.
    """
    name = host.strip().strip("[]").lower().rstrip(".")
    allowed = {_allow_key(entry) for entry in allowlist}
    allowed.discard("")
    listed = name in allowed
    if not listed:
        try:
            name = canonical_host(name) if not _is_ip(name) else name
        except InvalidHandle as exc:
            raise UnsafeHost(exc.reason) from None
        listed = name in allowed
    try:
        infos = (resolver or socket.getaddrinfo)(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeHost("instance host name does not resolve") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeHost("instance host name does not resolve")
    if not listed:
        for address in addresses:
            ok, what = is_public_address(address)
            if not ok:
                raise UnsafeHost(f"instance resolves to a non-public address ({what})")
    return addresses


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _allow_key(entry: str) -> str:
    entry = str(entry).strip().strip("[]").lower().rstrip(".")
    if not entry or _is_ip(entry):
        return entry
    try:
        return canonical_host(entry)
    except InvalidHandle:
        return entry
