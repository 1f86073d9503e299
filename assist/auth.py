"""Who may do what: API tokens with roles, checked on every HTTP and WebSocket route.

A request names its token as ``Authorization: Bearer T``; a browser's WebSocket, which cannot
set headers, sends ``{"type": "auth", "token": T}`` as its first frame. The token's role
decides what it may do (``PERMISSIONS``), the route decides what it needs (``ROUTES``), and
both tables are the ones docs/security.md shows and tests/test_auth.py checks against the
running app, so a route added without an entry here fails the tests. An agent token reaches
only its own agent's calls: any route with ``{call_id}`` in its path answers 404 for another
agent's call (as for a call that does not exist, so ids do not leak), and listings are cut to
the agent's calls. With ``ServerConfig.auth`` off every request is an admin named by
``X-Callwatch-User`` (a trusted network only).

Ingest WebSockets are checked per protocol on the upgrade, before any audio is read (close
1008 with the reason): Twilio's request signature, AudioHook's API key and signature, or an
``ingest`` (or admin) token, see assist/ingest_auth.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Path, Request, WebSocket, WebSocketException
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Route

from assist.ingest_auth import AudioHookVerifier, twilio_valid
from assist.store import StoreError

if TYPE_CHECKING:
    from assist.server import App

log = logging.getLogger("callwatch.auth")

# -- the tables ----------------------------------------------------------------------------

ROLES = ("agent", "supervisor", "qa", "admin", "ingest")
START_TIMEOUT_S = 10.0  # a raw stream without a header token must send its start by then
ALL, OWN = "all", "own"  # what a role's grant covers: every agent's calls, or its own


@dataclass(frozen=True)
class Permission:
    what: str  # for refusals and the docs: "may not <what>"
    grants: dict[str, str]  # role -> ALL | OWN


_READERS = {"agent": OWN, "supervisor": ALL, "qa": ALL, "admin": ALL}
_STAFF = {"supervisor": ALL, "qa": ALL, "admin": ALL}

PERMISSIONS: dict[str, Permission] = {
    "calls:read": Permission(
        "read calls: listings, details, events (HTTP and WebSocket), exports, rule "
        "explanations, transcript search",
        _READERS,
    ),
    "alerts:read": Permission("read the alert feed", _READERS),
    "alerts:triage": Permission(
        "acknowledge, assign or reopen alerts", {"supervisor": ALL, "admin": ALL}
    ),
    "audio:read": Permission("fetch call recordings", _STAFF),
    "audits:run": Permission("list recording folders and run, follow or cancel audits", _STAFF),
    "rules:read": Permission("read rule packs and their versions", _STAFF),
    "rules:edit": Permission(
        "edit, delete, validate, test or restore rule packs", {"qa": ALL, "admin": ALL}
    ),
    "agent:panel": Permission("open an agent's panel (session and event stream)", _READERS),
    "playbooks:read": Permission("read the assist playbooks", {**_STAFF, "agent": ALL}),
    "feedback:write": Permission(
        "give feedback on suggestions", {"agent": OWN, "supervisor": ALL, "admin": ALL}
    ),
    "feedback:read": Permission("read suggestion feedback", _STAFF),
    "metrics:read": Permission("read server metrics", _STAFF),
    "tokens:manage": Permission("list, create or revoke API tokens", {"admin": ALL}),
    "ingest": Permission("stream calls in (ingest)", {"ingest": ALL, "admin": ALL}),
}

WS = "WS"  # the "method" of a WebSocket route in ROUTES

# A row number in a path (token id, rule version): what the databases can hold, so a huge
# one is the client's error (422), not an overflow in the store (500).
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]

ROUTES: dict[tuple[str, str], str] = {
    # ingest (per protocol: see ingest_guard)
    (WS, "/v1/ingest/{protocol}"): "ingest",
    # calls
    ("GET", "/v1/calls"): "calls:read",
    ("GET", "/v1/calls/{call_id}"): "calls:read",
    ("GET", "/v1/calls/{call_id}/events"): "calls:read",
    (WS, "/v1/calls/{call_id}/events"): "calls:read",
    ("GET", "/v1/calls/{call_id}/export"): "calls:read",
    ("GET", "/v1/calls/{call_id}/explain/{rule_id}"): "calls:read",
    ("GET", "/v1/search"): "calls:read",
    ("GET", "/v1/calls/{call_id}/audio"): "audio:read",
    # alerts
    ("GET", "/v1/alerts"): "alerts:read",
    ("POST", "/v1/alerts/{call_id}/{seq}/ack"): "alerts:triage",
    ("POST", "/v1/alerts/{call_id}/{seq}/assign"): "alerts:triage",
    ("POST", "/v1/alerts/{call_id}/{seq}/reopen"): "alerts:triage",
    # agent panel and assist
    ("GET", "/v1/agents/{agent_id}/session"): "agent:panel",
    (WS, "/v1/agents/{agent_id}/events"): "agent:panel",
    ("GET", "/v1/playbooks"): "playbooks:read",
    ("POST", "/v1/calls/{call_id}/suggestions/{sid}/feedback"): "feedback:write",
    ("GET", "/v1/suggestions/feedback"): "feedback:read",
    # rules
    ("GET", "/v1/rules"): "rules:read",
    ("GET", "/v1/rules/{pack}"): "rules:read",
    ("GET", "/v1/rules/{pack}/versions"): "rules:read",
    ("GET", "/v1/rules/{pack}/versions/{n}"): "rules:read",
    ("GET", "/v1/rules/{pack}/rules/{rule_id}"): "rules:read",
    ("POST", "/v1/rules/validate"): "rules:edit",
    ("POST", "/v1/rules/test"): "rules:edit",
    ("PUT", "/v1/rules/{pack}"): "rules:edit",
    ("DELETE", "/v1/rules/{pack}"): "rules:edit",
    ("POST", "/v1/rules/{pack}/versions/{n}/restore"): "rules:edit",
    ("PUT", "/v1/rules/{pack}/rules/{rule_id}"): "rules:edit",
    ("DELETE", "/v1/rules/{pack}/rules/{rule_id}"): "rules:edit",
    # audits
    ("GET", "/v1/audits/folders"): "audits:run",
    ("POST", "/v1/audits"): "audits:run",
    ("GET", "/v1/audits"): "audits:run",
    ("GET", "/v1/audits/{job_id}"): "audits:run",
    ("POST", "/v1/audits/{job_id}/cancel"): "audits:run",
    # operations
    ("GET", "/metrics"): "metrics:read",
    ("GET", "/v1/tokens"): "tokens:manage",
    ("POST", "/v1/tokens"): "tokens:manage",
    ("DELETE", "/v1/tokens/{token_id}"): "tokens:manage",
}

# Open to anyone: liveness, the API's own description, and the agent panel's static page
# (it holds no data: it signs in and then calls the protected routes).
OPEN_ROUTES = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/agent"),
        ("GET", "/agent/"),
        ("GET", "/agent/static/{name}"),
    }
)


def matrix_markdown() -> str:
    """The role matrix as the Markdown table docs/security.md shows (a test compares)."""
    roles = [r for r in ROLES]
    lines = [
        "| permission | " + " | ".join(roles) + " | what |",
        "| --- | " + " | ".join("---" for _ in roles) + " | --- |",
    ]
    for name, perm in PERMISSIONS.items():
        cells = [{ALL: "yes", OWN: "own"}.get(perm.grants.get(r, ""), "-") for r in roles]
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {perm.what} |")
    return "\n".join(lines)


def routes_markdown() -> str:
    """Which routes need which permission, as docs/security.md shows it (a test compares)."""
    lines = ["| permission | routes |", "| --- | --- |"]
    for perm in PERMISSIONS:
        routes = [f"`{m} {p}`" for (m, p), need in ROUTES.items() if need == perm]
        lines.append(f"| `{perm}` | {', '.join(routes)} |")
    opened = ", ".join(f"`{m} {p}`" for m, p in sorted(OPEN_ROUTES, key=lambda r: r[1]))
    lines.append(f"| (open) | {opened} |")
    return "\n".join(lines)


class RedactTokens(logging.Filter):
    """Blanks ``token=...`` in logged URLs: the agent panel's sign-in link carries its token
    in the query, and uvicorn's access log would otherwise keep it."""

    _TOKEN = re.compile(r"([?&]token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._TOKEN.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self._TOKEN.sub(r"\1[redacted]", record.msg)
        return True


# -- who is asking -------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """The caller of a request: its role, its agent (agent tokens), a name for the record
    (rule edits, acknowledgements, audits) and the token's id (None with auth off)."""

    role: str
    agent_id: str | None
    name: str
    token_id: int | None

    def scope(self, permission: str) -> str | None:
        """ALL, OWN, or None when the role does not have ``permission``."""
        return PERMISSIONS[permission].grants.get(self.role)

    @property
    def own_agent(self) -> str | None:
        """The only agent whose calls this caller sees (None: every agent's)."""
        return self.agent_id if self.role == "agent" else None


class AuthError(Exception):
    """A refused request: 401 (no or bad token), 403 (role), 404 (another agent's call),
    503 (no store to check tokens in). ``ws_code`` is the WebSocket close code."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def ws_code(self) -> int:
        return {401: 4401, 403: 4403, 404: 4404}.get(self.status, 1013)


@dataclass
class AccessStats:
    """Counters for /metrics."""

    refused: int = 0  # HTTP and event-stream requests refused (401/403/404 by the guard)
    ingest_refused: int = 0  # ingest streams refused on the upgrade
    ingest_rate_limited: int = 0  # ingest streams closed for sending too fast
    ingest_too_large: int = 0  # ingest streams closed for a message over the frame limit
    by_reason: dict[str, int] = field(default_factory=dict)


def access_stats(app: Any) -> AccessStats:
    stats = getattr(app.state, "access", None)
    if stats is None:
        stats = AccessStats()
        app.state.access = stats
    return stats


def bearer(conn: Request | WebSocket) -> str:
    value = conn.headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else ""


def _a(role: str) -> str:
    return f"an {role}" if role[:1] in "aeiou" else f"a {role}"


def _name(info: dict[str, Any]) -> str:
    return str(info.get("label") or info.get("agent_id") or f"{info['role']} token #{info['id']}")


async def resolve(cw: App, token: str, user: str | None = None) -> Principal:
    """The principal behind ``token`` (raises AuthError)."""
    if not cw.config.auth:
        return Principal("admin", None, (user or "").strip()[:256] or "anonymous", None)
    if not token:
        raise AuthError("a token is needed: Authorization: Bearer TOKEN (callwatch tokens create)")
    if cw.store is None:
        raise AuthError("tokens need the store, and this server runs without one", 503)
    try:
        info = await asyncio.to_thread(cw.store.check_token, token)
    except Exception as exc:  # the store is down: say so, never let a request through
        raise AuthError(f"cannot check the token now: {exc}", 503) from exc
    if info is None:
        raise AuthError("unknown or revoked token")
    if info["role"] not in ROLES:
        raise AuthError(f"token has an unknown role {info['role']!r}", 403)
    return Principal(info["role"], info.get("agent_id"), _name(info), info["id"])


async def call_agent(cw: App, call_id: str) -> tuple[bool, str | None]:
    """(whether the call exists here or in the store, its agent)."""
    call = cw.calls.calls.get(call_id)
    if call is not None:
        return True, call.info.agent_id
    if cw.store is None:
        return False, None
    store = cw.store

    def lookup() -> tuple[bool, str | None]:
        report = store.get_report(call_id)
        if report is None and hasattr(store, "report_from_events"):
            report = store.report_from_events(call_id)
        if report is None:
            return False, None
        return True, report.get("agent_id")

    try:
        return await asyncio.to_thread(lookup)
    except StoreError as exc:
        raise AuthError(f"cannot look the call up now: {exc}", 503) from exc


async def authorize(
    cw: App, token: str, user: str | None, permission: str, path: dict[str, Any]
) -> Principal:
    """The principal, if it may use ``permission`` on a route with these path parameters."""
    p = await resolve(cw, token, user)
    scope = p.scope(permission)
    if scope is None:
        raise AuthError(f"{_a(p.role)} token may not {PERMISSIONS[permission].what}", 403)
    if scope == OWN:
        agent = path.get("agent_id")
        if agent is not None and agent != p.agent_id:
            raise AuthError(f"this token belongs to agent {p.agent_id!r}", 403)
        call_id = path.get("call_id")
        if call_id is not None:
            found, owner = await call_agent(cw, str(call_id))
            if not found or owner != p.agent_id:
                raise AuthError(f"no call {call_id!r}", 404)
    return p


def principal_of(conn: Request | WebSocket) -> Principal:
    """The principal the route's guard put on the request."""
    p = getattr(conn.state, "principal", None)
    if not isinstance(p, Principal):
        raise RuntimeError(f"{conn.url.path}: no access guard ran on this route")
    return p


# -- guards (FastAPI dependencies) ---------------------------------------------------------


class HttpGuard:
    """Dependency of an HTTP route: resolves and checks the principal (HTTP 401/403/404)."""

    def __init__(self, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission

    async def __call__(self, request: Request) -> Principal:
        cw: App = request.app.state.cw
        try:
            p = await authorize(
                cw,
                bearer(request),
                request.headers.get("x-callwatch-user"),
                self.permission,
                dict(request.path_params),
            )
        except AuthError as exc:
            access_stats(request.app).refused += 1
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            raise HTTPException(
                status_code=exc.status, detail=exc.message, headers=headers
            ) from None
        request.state.principal = p
        return p


class WsGuard:
    """Dependency of an event-stream WebSocket: accepts it, takes the token from the header or
    the first frame, and closes it (4401/4403/4404) when the principal may not read it."""

    def __init__(self, permission: str, refuse_code: int | None = None) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission
        self.refuse_code = refuse_code  # one code for every refusal (the agent panel's 4401)

    async def __call__(self, websocket: WebSocket) -> Principal:
        cw: App = websocket.app.state.cw
        await websocket.accept()
        token = bearer(websocket)
        if cw.config.auth and not token:
            token = await first_frame_token(websocket)
        try:
            p = await authorize(
                cw,
                token,
                websocket.headers.get("x-callwatch-user"),
                self.permission,
                dict(websocket.path_params),
            )
        except AuthError as exc:
            access_stats(websocket.app).refused += 1
            raise WebSocketException(self.refuse_code or exc.ws_code, exc.message[:120]) from None
        websocket.state.principal = p
        return p


async def first_frame_token(ws: WebSocket, timeout_s: float = 10.0) -> str:
    """The token a browser sends as its first frame: ``{"type": "auth", "token": T}``."""
    try:
        msg = await asyncio.wait_for(ws.receive_text(), timeout_s)
        data = json.loads(msg)
    except (TimeoutError, ValueError, RuntimeError, KeyError, Exception):
        return ""
    if isinstance(data, dict) and data.get("type") == "auth":
        return str(data.get("token") or "")
    return ""


_HTTP_GUARDS = {p: HttpGuard(p) for p in PERMISSIONS}


def guard(permission: str) -> Any:
    """``dependencies=[guard("calls:read")]`` on an HTTP route."""
    return Depends(_HTTP_GUARDS[permission])


def ws_guard(permission: str, refuse_code: int | None = None) -> Any:
    """``dependencies=[ws_guard("calls:read")]`` on a WebSocket route."""
    return Depends(WsGuard(permission, refuse_code))


# -- ingest --------------------------------------------------------------------------------


@dataclass
class IngestGrant:
    """What the ingest guard let through: who, and the first message when the guard had to
    read it (a raw start message carrying the token, with the token taken out)."""

    principal: Principal | None
    first: str | None = None
    gone: bool = False  # the client left during the check


class IngestGuard:
    """Dependency of ``/v1/ingest/{protocol}``: the protocol's own credential (or an ingest
    token) before a single audio byte is read; refusals close with 1008 and the reason."""

    permission = "ingest"

    def __init__(self, protocols: set[str]) -> None:
        self.protocols = protocols

    async def __call__(self, websocket: WebSocket) -> IngestGrant:
        grant = await self._check(websocket)
        websocket.state.ingest = grant
        if grant.principal is not None:
            websocket.state.principal = grant.principal
        return grant

    async def _check(self, websocket: WebSocket) -> IngestGrant:
        cw: App = websocket.app.state.cw
        protocol = str(websocket.path_params.get("protocol"))
        await websocket.accept()
        if protocol not in self.protocols:
            self._refuse(websocket, protocol, f"unknown protocol {protocol!r}")
        if not cw.config.auth:
            return IngestGrant(Principal("admin", None, "anonymous", None))
        token = bearer(websocket)
        if token:
            return IngestGrant(await self._token(websocket, cw, protocol, token))
        if protocol == "twilio":
            return IngestGrant(self._twilio(websocket, cw))
        if protocol == "audiohook":
            return IngestGrant(self._audiohook(websocket, cw))
        return await self._raw(websocket, cw, protocol)

    def _refuse(self, ws: WebSocket, protocol: str, reason: str) -> NoReturn:
        stats = access_stats(ws.app)
        stats.ingest_refused += 1
        peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        log.warning("ingest refused: %s from %s: %s", protocol, peer, reason)
        raise WebSocketException(1008, reason[:120])

    async def _token(self, ws: WebSocket, cw: App, protocol: str, token: str) -> Principal:
        try:
            p = await resolve(cw, token)
        except AuthError as exc:
            self._refuse(ws, protocol, exc.message)
        if p.scope("ingest") is None:
            self._refuse(ws, protocol, f"{_a(p.role)} token may not stream calls in")
        return p

    def _twilio(self, ws: WebSocket, cw: App) -> Principal:
        secret = cw.config.twilio_auth_token
        signature = ws.headers.get("x-twilio-signature", "")
        if not secret:
            self._refuse(ws, "twilio", "Twilio ingest is not configured (no Twilio auth token)")
        if not signature:
            self._refuse(ws, "twilio", "missing X-Twilio-Signature")
        url = public_url_of(ws, cw.config.public_url)
        if not twilio_valid(str(secret), url, signature):
            self._refuse(
                ws, "twilio", "bad X-Twilio-Signature (is --public-url the URL Twilio calls?)"
            )
        return Principal("ingest", None, "twilio", None)

    def _audiohook(self, ws: WebSocket, cw: App) -> Principal:
        verifier = audiohook_verifier(ws.app, cw)
        target, authority = target_and_authority(ws, cw.config.public_url)
        problem = verifier.check(ws.headers, target, authority)
        if problem is not None:
            self._refuse(ws, "audiohook", problem)
        key = ws.headers.get("x-api-key", "")
        return Principal("ingest", None, f"audiohook key ...{key[-4:]}", None)

    async def _raw(self, ws: WebSocket, cw: App, protocol: str) -> IngestGrant:
        """Clients that cannot set headers put the token in the start message."""
        try:
            msg = await asyncio.wait_for(ws.receive(), START_TIMEOUT_S)
        except TimeoutError:
            self._refuse(ws, protocol, f"no start message within {START_TIMEOUT_S:g} s")
        if msg["type"] == "websocket.disconnect":
            return IngestGrant(None, gone=True)
        start: Any = None
        if msg.get("text") is not None:
            try:
                start = json.loads(msg["text"])
            except ValueError:
                start = None
        token = start.get("token") if isinstance(start, dict) else None
        if not isinstance(token, str) or not token:
            self._refuse(
                ws,
                protocol,
                'a token is needed: Authorization: Bearer T, or "token" in the start message',
            )
        assert isinstance(start, dict) and isinstance(token, str)
        p = await self._token(ws, cw, protocol, token)
        rest = {k: v for k, v in start.items() if k != "token"}  # never stored or echoed
        return IngestGrant(p, first=json.dumps(rest))


def public_url_of(ws: WebSocket, public_url: str | None) -> str:
    """The full URL the client called: ``public_url`` (behind a proxy the Host header and
    scheme differ) and the request's path and query, else the request as it arrived."""
    target, authority = target_and_authority(ws, public_url)
    scheme = (urlsplit(public_url).scheme or "wss") if public_url else ws.url.scheme
    return f"{scheme}://{authority}{target}"


def target_and_authority(ws: WebSocket, public_url: str | None) -> tuple[str, str]:
    """(path and query as the client sent them, host[:port] the client connected to)."""
    raw_path = ws.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else ws.url.path
    query = ws.scope.get("query_string", b"").decode("latin-1")
    target = path + (f"?{query}" if query else "")
    if public_url:
        base = urlsplit(public_url)
        return base.path.rstrip("/") + target, base.netloc
    return target, ws.headers.get("host", "")


def audiohook_verifier(app: Any, cw: App) -> AudioHookVerifier:
    """One verifier per app (it remembers recent nonces), rebuilt if the settings change."""
    keys = list(cw.config.audiohook_api_keys)
    secret = cw.config.audiohook_client_secret
    current = getattr(app.state, "audiohook_verifier", None)
    if current is None or current[0] != (keys, secret):
        current = ((keys, secret), AudioHookVerifier(keys, secret))
        app.state.audiohook_verifier = current
    verifier: AudioHookVerifier = current[1]
    return verifier


# -- token management over HTTP ------------------------------------------------------------


def add_token_routes(app: FastAPI) -> None:
    def store_of(request: Request) -> Any:
        cw: App = request.app.state.cw
        if cw.store is None:
            raise HTTPException(status_code=503, detail="tokens need the store")
        return cw.store

    @app.get("/v1/tokens", dependencies=[guard("tokens:manage")])
    async def list_tokens(request: Request) -> dict[str, Any]:
        """Every token (never its secret: only a hash is kept)."""
        store = store_of(request)
        try:
            return {"tokens": await asyncio.to_thread(store.list_tokens)}
        except StoreError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    @app.post("/v1/tokens", status_code=201, dependencies=[guard("tokens:manage")])
    async def create_token(request: Request) -> dict[str, Any]:
        """A new token: ``{"role", "agent_id"?, "label"?}``; the secret is in this answer
        only."""
        store = store_of(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HTTPException(status_code=422, detail='send JSON {"role", "agent_id"?, "label"?}')
        role, agent_id, label = body.get("role"), body.get("agent_id"), body.get("label", "")
        problem = token_request_problem(role, agent_id, label)
        if problem:
            raise HTTPException(status_code=422, detail=problem)
        try:
            token = await asyncio.to_thread(store.create_token, role, agent_id, label)
            info = await asyncio.to_thread(store.check_token, token)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except StoreError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        log.info(
            "token #%s (%s) created by %s", info and info["id"], role, principal_of(request).name
        )
        return {
            "id": info["id"] if info else None,
            "token": token,
            "role": role,
            "agent_id": agent_id,
            "label": label,
            "note": "shown once: only its hash is kept",
        }

    @app.delete("/v1/tokens/{token_id}", dependencies=[guard("tokens:manage")])
    async def revoke_token(request: Request, token_id: RowId) -> dict[str, Any]:
        store = store_of(request)
        try:
            done = await asyncio.to_thread(store.revoke_token, token_id)
        except StoreError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        if not done:
            raise HTTPException(status_code=404, detail=f"no active token {token_id}")
        log.info("token #%s revoked by %s", token_id, principal_of(request).name)
        return {"id": token_id, "revoked": True}


def token_request_problem(role: Any, agent_id: Any, label: Any) -> str | None:
    """What is wrong with a token request (HTTP and CLI), or None."""
    if role not in ROLES:
        return f"'role' must be one of: {', '.join(ROLES)}"
    if role == "agent" and (not isinstance(agent_id, str) or not agent_id.strip()):
        return "an agent token needs 'agent_id': the agent it belongs to"
    if role != "agent" and agent_id not in (None, ""):
        return "'agent_id' is only for agent tokens"
    if not isinstance(label, str) or len(label) > 256:
        return "'label' is text of at most 256 characters (who or what uses the token)"
    return None


# -- the route table against the app -------------------------------------------------------


def _route_keys(route: Any) -> list[tuple[str, str]]:
    if isinstance(route, APIWebSocketRoute):
        return [(WS, route.path)]
    if isinstance(route, APIRoute | Route):
        return [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return []


def route_permission(route: Any) -> str | None:
    """The permission a route's guard checks (None: no guard)."""
    deps = getattr(route, "dependencies", None) or []
    for dep in deps:
        call = dep.dependency if isinstance(dep, DependsParam) else None
        perm = getattr(call, "permission", None)
        if isinstance(perm, str):
            return perm
    return None


def route_problems(app: FastAPI) -> list[str]:
    """Routes whose guard disagrees with ``ROUTES`` (or that have none and are not open)."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for route in app.routes:
        for key in _route_keys(route):
            seen.add(key)
            want = ROUTES.get(key)
            have = route_permission(route)
            if key in OPEN_ROUTES:
                if have is not None:
                    problems.append(f"{key[0]} {key[1]} is listed as open but has a guard")
                continue
            if want is None:
                problems.append(f"{key[0]} {key[1]} is not in auth.ROUTES (nor OPEN_ROUTES)")
            elif have != want:
                problems.append(f"{key[0]} {key[1]} checks {have!r}, auth.ROUTES says {want!r}")
    for key in ROUTES:
        if key not in seen:
            problems.append(f"{key[0]} {key[1]} is in auth.ROUTES but the app has no such route")
    return problems
