"""schemathesis against the OpenAPI schema of the in-process app: no 5xx, documented shapes.

Every HTTP operation in the schema (WebSocket routes are not in it; ``POST /v1/audits`` is
left out: it starts Whisper work) gets a bounded number of generated requests against a
real app (the shared model and packs, auth off, a temporary SQLite store). Each answer must
not be a server error and, where the schema declares a body for its status, must match it.
Failures already understood are listed in KNOWN, each with a strict xfail below that
reproduces it; when one is fixed, its xfail passes and fails the run until it is removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from assist.server import create_app
from bench.fuzz import api_labels, api_operations, check_api_case
from tests.fuzzing import fuzz_settings
from tests.live_server import make_state
from tests.test_fuzz_rules import HOSTILE_YAML, mutated_pack, spliced_text, values

pytestmark = pytest.mark.slow  # the app needs the shared Whisper model

FUZZ = fuzz_settings(25, 200, every_health_check=True)

# (operation or "*", a fragment of the failure) -> why; each has a strict xfail at the end
KNOWN: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def api(asr, packs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:  # type: ignore[no-untyped-def]
    home: Path = tmp_path_factory.mktemp("fuzz-api")
    state = make_state(
        asr,
        packs,
        db_url=f"sqlite:///{home / 'api.db'}",
        rules=str(home / "rules"),
        rules_poll_s=0,
        audit_dirs=[str(home / "recordings")],
    )
    # an exception in a route is the 500 a client would get, not a test crash
    with TestClient(create_app(state=state), raise_server_exceptions=False) as client:
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
        yield client, schema
    state.close()


def known(problem: str) -> bool:
    return any(
        (op == "*" or problem.startswith(f"{op} -> ")) and fragment in problem
        for op, fragment in KNOWN
    )


@pytest.mark.parametrize("label", api_labels())
def test_operation_never_answers_5xx_or_off_schema(api: tuple[Any, Any], label: str) -> None:
    client, schema = api
    (op,) = [o for o in api_operations(schema) if o.label == label]
    problems: dict[str, str] = {}
    cases = 0

    @FUZZ
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        nonlocal cases
        cases += 1
        problem = check_api_case(client, case)
        if problem is not None and not known(problem):
            problems.setdefault(problem, case.as_curl_command())

    run()
    print(f"{label}: {cases} cases")  # shown with -s: the figures for docs/benchmarks.md
    assert cases > 0
    assert not problems, "\n".join(f"{p}\n    {curl}" for p, curl in problems.items())


# -- rule bodies: the schema does not describe them, so schemathesis sends none -----------------
def jsonable(value: Any) -> Any:
    """YAML data as JSON can carry it: keys as strings, dates as text (NaN stays NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


@st.composite
def rule_request(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    """A rules API request with a mutated pack, rule or cases file as its body."""
    kind = draw(st.sampled_from(["validate", "put_pack", "put_rule", "put_rule_json", "test"]))
    pack = draw(st.one_of(mutated_pack(), values))
    text = draw(
        st.one_of(
            st.just(yaml.safe_dump(pack, allow_unicode=True)),
            spliced_text(),
            st.sampled_from(HOSTILE_YAML).map(lambda h: "pack: fuzz\n" + h + "\n"),
        )
    )
    as_yaml = {"Content-Type": "application/yaml"}
    if kind == "validate":
        return "POST", "/v1/rules/validate", as_yaml, text.encode()
    if kind == "put_pack":
        return "PUT", "/v1/rules/fuzz", as_yaml, text.encode()
    rules = pack.get("rules") if isinstance(pack, dict) else None
    rule = draw(st.sampled_from(rules)) if isinstance(rules, list) and rules else pack
    if kind == "put_rule":
        rule_text = draw(
            st.one_of(
                st.just(yaml.safe_dump(rule, allow_unicode=True)), st.sampled_from(HOSTILE_YAML)
            )
        )
        return "PUT", "/v1/rules/default/rules/fuzz_rule", as_yaml, rule_text.encode()
    as_json = {"Content-Type": "application/json"}
    if kind == "put_rule_json":
        body = json.dumps({"rule": jsonable(rule)}).encode()
        return "PUT", "/v1/rules/default/rules/fuzz_rule", as_json, body
    cases = yaml.safe_dump(draw(values), allow_unicode=True)
    return "POST", "/v1/rules/test", as_json, json.dumps({"cases": cases, "yaml": text}).encode()


@FUZZ
@given(request=rule_request())
def test_rule_bodies_get_client_errors_never_5xx(
    api: tuple[Any, Any], request: tuple[str, str, dict[str, str], bytes]
) -> None:
    client, _ = api
    method, url, headers, body = request
    resp = client.request(method, url, headers=headers, content=body)
    if resp.status_code == 500 and registry_peek_crashes(body):
        return  # known: test_rules_registry_peeks_survive_what_the_loader_refuses below
    assert resp.status_code < 500, f"{method} {url} -> {resp.status_code} for {body[:300]!r}"
    if resp.status_code == 422:
        detail = resp.json()["detail"]
        assert isinstance(detail, dict) and detail.get("message"), detail


def registry_peek_crashes(body: bytes) -> bool:
    """The known registry bug's trigger: yaml.safe_load raising something not a YAMLError."""
    texts = [body.decode("utf-8", "replace")]
    try:
        data = json.loads(body)
        texts = [v for v in data.values() if isinstance(v, str)] if isinstance(data, dict) else []
    except ValueError:
        pass
    for text in texts:
        try:
            yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        except Exception:
            return True
    return False


# -- found by schemathesis, to be fixed in files other helpers own now ---------------------------
def one_case(api: tuple[Any, Any], label: str, **parts: Any) -> str | None:
    """The check of one hand-made request (same checks as the generated ones)."""
    client, schema = api
    (op,) = [o for o in api_operations(schema) if o.label == label]
    return check_api_case(client, op.Case(**parts))


HUGE = 2**64
INT_PATHS = [
    ("GET /v1/rules/{pack}/versions/{n}", {"pack": "default", "n": HUGE}),
    ("POST /v1/rules/{pack}/versions/{n}/restore", {"pack": "default", "n": HUGE}),
    ("DELETE /v1/tokens/{token_id}", {"token_id": HUGE}),
    ("POST /v1/alerts/{call_id}/{seq}/ack", {"call_id": "c", "seq": HUGE}),
    ("POST /v1/alerts/{call_id}/{seq}/reopen", {"call_id": "c", "seq": HUGE}),
    ("POST /v1/alerts/{call_id}/{seq}/assign", {"call_id": "c", "seq": HUGE}),
]


@pytest.mark.parametrize(("label", "path"), INT_PATHS)
def test_integers_past_64_bits_are_client_errors(
    api: tuple[Any, Any], label: str, path: dict[str, Any]
) -> None:
    """Once a 500 (SQLite OverflowError) on versions/{n} and tokens/{token_id}; those routes
    now bound their integers (ge=1, le=2**63-1) and answer FastAPI's documented 422."""
    problem = one_case(api, label, path_parameters=path)
    assert problem is None or " -> 5" not in problem, problem


@pytest.mark.parametrize(
    ("label", "parts"),
    [
        ("GET /v1/search", {"query": {}}),
        ("GET /v1/calls", {"query": {"scope": "nowhere"}}),
        (
            "GET /v1/calls/{call_id}/export",
            {"path_parameters": {"call_id": "c"}, "query": {"format": "pdf"}},
        ),
        ("PUT /v1/rules/{pack}", {"path_parameters": {"pack": "bad name"}}),
    ],
)
def test_app_422_answers_match_the_documented_schema(
    api: tuple[Any, Any], label: str, parts: dict[str, Any]
) -> None:
    assert one_case(api, label, **parts) is None


PEEK_CRASHES = [
    "pack: fuzz\ndescription: 2001-13-45\n",  # ValueError: month must be in 1..12
    "pack: fuzz\nversion: !!int abc\n",  # ValueError from the int constructor
    "pack: fuzz\nrules: " + "[" * 3000 + "]" * 3000 + "\n",  # RecursionError
]


@pytest.mark.parametrize("text", PEEK_CRASHES)
@pytest.mark.parametrize("url", ["POST /v1/rules/validate", "PUT /v1/rules/default/rules/r1"])
def test_rules_registry_peeks_survive_what_the_loader_refuses(
    api: tuple[Any, Any], text: str, url: str
) -> None:
    client, _ = api
    method, path = url.split()
    line = 2
    if "/rules/r1" in path:  # one rule's text (the id comes from the URL): lines count in it
        text = "kind: silence\nmin_s: 1\n" + text.replace("pack: fuzz\n", "")
        line = 3
    resp = client.request(method, path, headers={"Content-Type": "application/yaml"}, content=text)
    assert resp.status_code == 422, resp.text[:200]
    assert resp.json()["detail"]["issues"][0]["line"] == line
