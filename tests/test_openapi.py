"""The OpenAPI document covers every JSON route the app serves, with the right methods."""

from __future__ import annotations

import re


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_json_route_is_described_with_its_methods(app):
    spec = app.test_client().get("/openapi.json")
    assert spec.status_code == 200 and spec.is_json
    doc = spec.get_json()
    assert doc["openapi"].startswith("3.1")
    described = doc["paths"]
    served = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/pages", "/static")):
            continue  # HTML for people, and static files
        served.setdefault(_openapi_path(rule.rule), set()).update(
            m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    assert set(served) == set(described), (set(served) ^ set(described))
    for path, methods in served.items():
        assert set(described[path]) == methods, path
        for method, op in described[path].items():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{([a-z_]+)}", path)), (method, path)
            assert op["responses"], (method, path)
            if path.startswith("/api/"):
                assert op.get("security") == [{"bearer": []}], path


def test_every_reference_resolves(app):
    doc = app.test_client().get("/openapi.json").get_json()
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([A-Za-z]+)"', str(doc).replace("'", '"')))
    assert refs and refs <= set(doc["components"]["schemas"])
