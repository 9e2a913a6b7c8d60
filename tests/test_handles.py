"""Handles: normalisation, strict validation with reasons, and the Mastodon address guard.

The guard is tested through the live source against a local Mastodon stand-in
(tests/social_servers.py): a refused instance must cost no request at all.
"""

from __future__ import annotations

import socket

import pytest
import requests

from connectors import social
from connectors.social.base import LookupFailure, NetworkMetrics
from connectors.social.handles import (
    InvalidHandle,
    UnsafeHost,
    canonical_host,
    is_public_address,
    normalise,
    resolve_public,
)
from social_servers import MastodonServer

# ---------------------------------------------------------------- normalisation

TABLE = [
    ("x", "@Jack", "jack"),
    ("x", " jack ", "jack"),
    ("x", "https://x.com/Jack", "jack"),
    ("x", "https://twitter.com/jack/status/20", "jack"),
    ("x", "twitter.com/jack?lang=en", "jack"),
    ("x", "http://mobile.twitter.com/jack", "jack"),
    ("x", "https://www.x.com/a_b_1", "a_b_1"),
    ("bluesky", "@Alice.BSKY.social", "alice.bsky.social"),
    ("bluesky", "https://bsky.app/profile/alice.bsky.social", "alice.bsky.social"),
    ("bluesky", "bsky.app/profile/alice.example.com/post/3k", "alice.example.com"),
    ("bluesky", "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"),
    ("bluesky", "https://bsky.app/profile/did:plc:ewvi7nxzyoun6zhxrhs64oiz",
     "did:plc:ewvi7nxzyoun6zhxrhs64oiz"),
    ("bluesky", "at://alice.bsky.social", "alice.bsky.social"),
    ("mastodon", "Chen@Fosstodon.org", "chen@fosstodon.org"),
    ("mastodon", "@chen@fosstodon.org", "chen@fosstodon.org"),
    ("mastodon", "https://fosstodon.org/@chen", "chen@fosstodon.org"),
    ("mastodon", "https://mastodon.social/users/Chen", "chen@mastodon.social"),
    ("mastodon", "https://mastodon.social/@chen@fosstodon.org", "chen@fosstodon.org"),
    ("mastodon", "fosstodon.org/@chen", "chen@fosstodon.org"),
    ("mastodon", "chen@Bücher.example", "chen@xn--bcher-kva.example"),
    ("mastodon", "chen@fosstodon.org.", "chen@fosstodon.org"),
    ("github", "@Octo-Cat", "octo-cat"),
    ("github", "https://github.com/octocat", "octocat"),
    ("github", "github.com/octocat/hello-world", "octocat"),
    ("github", "a" * 39, "a" * 39),
    ("reddit", "u/Gus_Lima", "gus_lima"),
    ("reddit", "/u/gus_lima", "gus_lima"),
    ("reddit", "user/gus-lima", "gus-lima"),
    ("reddit", "https://www.reddit.com/user/Gus_Lima/", "gus_lima"),
    ("reddit", "https://old.reddit.com/u/gus_lima", "gus_lima"),
    ("reddit", "@gus_lima", "gus_lima"),
    ("youtube", "@FarahTech", "@farahtech"),
    ("youtube", "farahtech", "@farahtech"),
    ("youtube", "https://www.youtube.com/@farah.tech", "@farah.tech"),
    ("youtube", "youtube.com/@farah-tech/videos", "@farah-tech"),
    ("youtube", "https://m.youtube.com/@Farah_Tech", "@farah_tech"),
]


@pytest.mark.parametrize(("network", "raw", "expected"), TABLE)
def test_normalise(network, raw, expected):
    assert normalise(network, raw) == expected
    assert normalise(network, expected) == expected  # idempotent: safe as a cache key


INVALID = [
    ("x", "", "empty"),
    ("x", "jack dorsey", "spaces"),
    ("x", "jack\x00", "control"),
    ("x", "a" * 16, "1-15"),
    ("x", "jack-d", "1-15"),
    ("x", "https://x.com/", "does not name"),
    ("x", "https://x.com/home", "does not name"),
    ("x", "https://facebook.com/jack", "not a x profile URL"),
    ("x", "ftp://x.com/jack", "must be http"),
    ("x", "https://user:pw@x.com/jack", "credentials"),
    ("bluesky", "alice", "domain name"),
    ("bluesky", "alice.bsky.social-", "invalid label"),
    ("bluesky", "alice.bsky.1social", "must start with a letter"),
    ("bluesky", "alice.test.local", "can't end in .local"),
    ("bluesky", "alice.bsky.social.example", "can't end in .example"),
    ("bluesky", "älice.bsky.social", "ASCII"),
    ("bluesky", "did:key:abc", "unsupported DID"),
    ("bluesky", "https://bsky.app/search?q=a", "bsky.app/profile"),
    ("mastodon", "chen", "user@instance"),
    ("mastodon", "chen@a@b.example", "user@instance"),
    ("mastodon", "chen.wei@fosstodon.org", "usernames are"),
    ("mastodon", "chen@fosstodon.org:8443", "host name"),
    ("mastodon", "chen@fosstodon.org/path", "host name"),
    ("mastodon", "chen@under_score.example", "valid host name"),
    ("mastodon", "https://fosstodon.org/about", "https://<instance>/@user"),
    ("github", "-octo", "single inner hyphens"),
    ("github", "octo-", "single inner hyphens"),
    ("github", "oc--to", "single inner hyphens"),
    ("github", "a" * 40, "1-39"),
    ("github", "octo_cat", "1-39"),
    ("reddit", "ab", "3-20"),
    ("reddit", "a" * 21, "3-20"),
    ("reddit", "gus.lima", "3-20"),
    ("reddit", "https://reddit.com/r/python", "reddit.com/user"),
    ("youtube", "@ab", "3-30"),
    ("youtube", "@" + "a" * 31, "3-30"),
    ("youtube", "@farah tech", "spaces"),
    ("youtube", "@@farah", "3-30"),
    ("youtube", "https://youtube.com/channel/UCq7Jf2kR0dLwA8vYtZp3mNQ", "@handle URLs"),
    ("myspace", "tom", "unknown network"),
]


@pytest.mark.parametrize(("network", "raw", "why"), INVALID)
def test_invalid_handles_say_why(network, raw, why):
    with pytest.raises(InvalidHandle, match=None) as caught:
        normalise(network, raw)
    assert why in caught.value.reason and str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_not_a_string():
    with pytest.raises(InvalidHandle, match="not a string"):
        normalise("x", 42)  # type: ignore[arg-type]


# ---------------------------------------------------------------- SSRF: names

IP_NOTATIONS = [
    "127.0.0.1", "2130706433", "0x7f000001", "0x7F.0.0.1", "0177.0.0.1", "017700000001",
    "127.1", "127.0.1", "[::1]", "::1", "::ffff:127.0.0.1", "[::ffff:7f00:1]", "0.0.0.0", "0",
    "169.254.169.254", "10.0.0.1", "192.168.1.1", "１２７．０．０．１", "127。0。0。1",
    "127.0.0.1%2f", "127.0.0.1.",
]


@pytest.mark.parametrize("host", IP_NOTATIONS)
def test_ip_literals_in_any_notation_are_refused_without_a_request(host):
    with pytest.raises(InvalidHandle) as caught:
        normalise("mastodon", f"alice@{host}")
    assert "host name" in caught.value.reason or "IP address" in caught.value.reason
    with pytest.raises(InvalidHandle):
        normalise("mastodon", f"https://{host}/@alice")


def test_a_port_in_a_profile_url_is_dropped_and_the_name_still_checked():
    assert normalise("mastodon", "https://localhost:8443/@alice") == "alice@localhost"
    with pytest.raises(InvalidHandle, match="no IP literal, port or path"):
        normalise("mastodon", "alice@localhost:80")


def test_unicode_tricks_map_to_what_they_spell():
    assert canonical_host("ⓛⓞⓒⓐⓛⓗⓞⓢⓣ") == "localhost"  # then refused by address, below
    assert canonical_host("ＭＡＳＴＯＤＯＮ．social") == "mastodon.social"
    assert normalise("mastodon", "alice@ⓜⓐⓢⓣⓞⓓⓞⓝ.social") == "alice@mastodon.social"


# ---------------------------------------------------------------- SSRF: addresses

ADDRESSES = [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.0.1", "private"), ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "private"), ("100.64.0.1", "not globally"),
    ("198.18.0.1", "private"), ("::1", "loopback"), ("::", "unspecified"),
    ("fe80::1%eth0", "link-local"), ("fc00::1", "private"), ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback, IPv4 inside IPv6"), ("::ffff:10.0.0.1", "private, IPv4"),
    ("64:ff9b::7f00:1", "loopback, IPv4 inside IPv6"), ("2002:7f00:1::", "IPv4 inside IPv6"),
    ("::127.0.0.1", "loopback, IPv4 inside IPv6"),
]


@pytest.mark.parametrize(("address", "what"), ADDRESSES)
def test_non_public_addresses(address, what):
    ok, said = is_public_address(address)
    assert not ok and what in said


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses(address):
    assert is_public_address(address) == (True, "")


def fake_dns(table):
    def resolve(host, port, *args, **kwargs):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in table[host]]
    return resolve


def test_every_resolved_address_is_checked():
    dns = fake_dns({"mixed.example.com": ["93.184.216.34", "10.0.0.5"],
                    "public.example.com": ["93.184.216.34", "2606:4700:4700::1111"]})
    with pytest.raises(UnsafeHost, match="private"):
        resolve_public("mixed.example.com", 443, resolver=dns)
    assert resolve_public("public.example.com", 443, resolver=dns) == [
        "93.184.216.34", "2606:4700:4700::1111"]
    with pytest.raises(UnsafeHost, match="does not resolve"):
        resolve_public("nxdomain.example.com", 443, resolver=dns)
    # an allowlisted name is trusted whatever it resolves to
    assert resolve_public("mixed.example.com", 443, allowlist=["MIXED.example.com."],
                          resolver=dns) == ["93.184.216.34", "10.0.0.5"]


# ---------------------------------------------------------------- SSRF: end to end


@pytest.fixture
def instance():
    server = MastodonServer()
    server.add("alice", 42)
    yield server
    server.close()


def mastodon_source(instance, **options):
    opts = dict(session=requests.Session(),
                endpoints={"mastodon": f"http://{{instance}}:{instance.port}"},
                timeouts=(1.0, 1.0), max_retries=2, backoff_seconds=0.01)
    opts.update(options)
    return social.build("live", **opts)


def test_a_name_resolving_to_loopback_is_refused_without_a_request(instance):
    source = mastodon_source(instance)  # real DNS: localhost is 127.0.0.1
    for raw in ("alice@localhost", "alice@ⓛⓞⓒⓐⓛⓗⓞⓢⓣ", "https://localhost/@alice"):
        found = source.fetch_metrics("mastodon", [raw])[raw]
        assert found == LookupFailure("instance resolves to a non-public address (loopback)",
                                      retryable=False), raw
    assert instance.calls == [] and source.requests_sent["mastodon"] == 0  # refused pre-connect


@pytest.mark.parametrize(("records", "what"), [
    (["127.0.0.1"], "loopback"), (["169.254.169.254"], "link-local"),
    (["93.184.216.34", "192.168.1.10"], "private"),
    (["::ffff:127.0.0.1"], "loopback, IPv4 inside IPv6"),
    (["0.0.0.0"], "unspecified"),
])
def test_a_name_resolving_to_internal_addresses_is_refused(instance, records, what):
    dns = fake_dns({"rebind.example.com": records})
    asked = []
    source = mastodon_source(instance, resolver=lambda *a, **k: asked.append(a[0]) or dns(*a, **k))
    found = source.fetch_metrics("mastodon", ["alice@rebind.example.com", "bob@rebind.example.com"])
    assert set(found.values()) == {
        LookupFailure(f"instance resolves to a non-public address ({what})", retryable=False)}
    assert instance.calls == [] and source.requests_sent["mastodon"] == 0
    assert asked == ["rebind.example.com"]  # the second handle on that instance: skipped


def test_an_allowlisted_host_reaches_the_local_server(instance):
    source = mastodon_source(instance, mastodon_allowlist=["localhost"])
    found = source.fetch_metrics("mastodon", ["@alice@localhost", "ghost@localhost"])
    assert isinstance(found["@alice@localhost"], NetworkMetrics)
    assert found["@alice@localhost"].followers == 42
    assert found["ghost@localhost"] == LookupFailure("not found", retryable=False)
    assert len(instance.calls) == 2


def test_the_connection_is_pinned_to_the_checked_address(instance):
    """The name is resolved once, by the guard; the socket goes to that address, and the
    server still sees the instance's name in Host (and, over TLS, in SNI)."""
    dns = fake_dns({"mastodon.lan.example": ["127.0.0.1"]})
    source = mastodon_source(instance, mastodon_allowlist=["mastodon.lan.example"], resolver=dns)
    found = source.fetch_metrics("mastodon", ["alice@mastodon.lan.example"])
    assert found["alice@mastodon.lan.example"].followers == 42
    assert instance.calls[0].headers["host"] == f"mastodon.lan.example:{instance.port}"


def test_a_redirect_to_an_internal_address_is_not_followed(instance):
    target = MastodonServer()
    target.add("alice", 1)
    try:
        instance.fault("redirect", times=None,
                       location=f"http://127.0.0.1:{target.port}/api/v1/accounts/lookup?acct=alice")
        source = mastodon_source(instance, mastodon_allowlist=["localhost"])
        found = source.fetch_metrics("mastodon", ["alice@localhost"])["alice@localhost"]
        assert found == LookupFailure("redirected (HTTP 302), not followed", retryable=False)
        assert len(instance.calls) == 1 and target.calls == []
    finally:
        target.close()


def test_an_endpoint_override_is_guarded_too(instance):
    source = mastodon_source(instance, endpoints={"mastodon": instance.url})  # 127.0.0.1
    found = source.fetch_metrics("mastodon", ["alice@mastodon.social"])["alice@mastodon.social"]
    assert found == LookupFailure("instance resolves to a non-public address (loopback)",
                                  retryable=False)
    assert instance.calls == []


def test_pinned_tls_uses_the_name_for_sni_and_certificate():
    """Over HTTPS the socket goes to the checked address while SNI and the certificate check
    use the instance's name: a certificate for another name is refused."""
    import json
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme

    from connectors.social.http import Call, Http, guarded_session

    ca = trustme.CA()
    seen: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen["host"] = self.headers["Host"]
            body = json.dumps({"id": "1"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mastodon.lan.example").configure_cert(context)
    context.sni_callback = lambda sock, name, ctx: seen.__setitem__("sni", name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    port = server.server_address[1]
    dns = fake_dns({"mastodon.lan.example": ["127.0.0.1"], "other.lan.example": ["127.0.0.1"]})
    try:
        with ca.cert_pem.tempfile() as ca_file:
            base = requests.Session()
            base.verify = ca_file
            session = guarded_session(base, resolver=dns,
                                      allowlist=["mastodon.lan.example", "other.lan.example"])
            http = Http(session, "mastodon", max_retries=0)
            reply = http.get_json(f"https://mastodon.lan.example:{port}/api/v1/accounts/lookup",
                                  call=Call())
            assert reply.status == 200 and reply.body == {"id": "1"}
            assert seen == {"sni": "mastodon.lan.example", "host": f"mastodon.lan.example:{port}"}
            wrong = http.get_json(f"https://other.lan.example:{port}/", call=Call())
            assert wrong == LookupFailure("mastodon TLS verification failed", retryable=True)
    finally:
        server.shutdown()
        server.server_close()
