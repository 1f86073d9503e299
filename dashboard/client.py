"""The board's only way to talk to callwatch servers: a small typed HTTP client (httpx, sync).

One board may watch several servers: listings are merged (calls de-duplicated by call_id,
alerts newest first), and writes about a call go to the server that owns it. Every failure
becomes a ``ServerError`` (``ServerDown``, ``ServerSlow``) so pages can say what went wrong
instead of showing a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

DEFAULT_SERVER = "http://127.0.0.1:8080"


class ServerError(Exception):
    """A server answered with an error (or could not be asked). ``issues`` holds the 422
    rule issues ({file, line, field, message}) when there are any."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        url: str = "",
        issues: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url
        self.issues: list[dict[str, Any]] = list(issues or [])


class ServerDown(ServerError):
    """Nothing answers at the URL: connection refused, unknown host, reset."""


class ServerSlow(ServerError):
    """The server did not answer within the client's timeout."""


def normalize_url(url: str) -> str:
    """An http(s) base URL from what a user typed (ws:// is the server's own print-out)."""
    u = url.strip().rstrip("/")
    if u.startswith("ws://"):
        u = "http://" + u[5:]
    elif u.startswith("wss://"):
        u = "https://" + u[6:]
    elif not u.startswith(("http://", "https://")):
        u = "http://" + u
    return u


def _parse_servers(servers: str | list[str]) -> list[str]:
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    out: list[str] = []
    for s in items:
        if s.strip():
            u = normalize_url(s)
            if u not in out:
                out.append(u)
    return out or [DEFAULT_SERVER]


def _detail_of(resp: httpx.Response) -> tuple[str, list[dict[str, Any]]]:
    """The server's own words from a FastAPI error body ({"detail": str | {message, issues}
    | [pydantic errors]})."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        return (text[:300] or resp.reason_phrase or f"HTTP {resp.status_code}"), []
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return detail, []
    if isinstance(detail, dict):
        issues = detail.get("issues")
        issue_list = [i for i in issues if isinstance(i, dict)] if isinstance(issues, list) else []
        return str(detail.get("message") or json.dumps(detail)), issue_list
    if isinstance(detail, list):  # FastAPI request validation errors
        msgs = [
            f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}"
            if isinstance(d, dict)
            else str(d)
            for d in detail
        ]
        return "; ".join(msgs) or f"HTTP {resp.status_code}", []
    return str(detail), []


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones; lists become comma lists."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None or v == "" or v == []:
            continue
        if isinstance(v, list | tuple | set):
            out[k] = ",".join(str(x) for x in v)
        elif isinstance(v, bool):
            out[k] = "true" if v else "false"
        else:
            out[k] = v
    return out


def alert_id(alert: Mapping[str, Any]) -> str:
    """An alert's id: the server's ``alert_id``, else ``{call_id}:{seq}``."""
    return str(alert.get("alert_id") or f"{alert.get('call_id')}:{alert.get('seq')}")


def _sort_key_started(c: dict[str, Any]) -> float:
    v = c.get("started_at")
    return float(v) if isinstance(v, int | float) else 0.0


class CallwatchClient:
    """Typed access to one or more callwatch servers' HTTP API."""

    def __init__(
        self,
        servers: str | list[str],
        token: str | None = None,
        user: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.servers: list[str] = _parse_servers(servers)
        self.token = token or None
        self.user = user or None
        self.timeout_s = float(timeout_s)
        self._owner: dict[str, str] = {}  # call_id -> the server that listed it
        headers: dict[str, str] = {"Accept": "application/json"}
        if self.user:
            headers["X-Callwatch-User"] = self.user
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(headers=headers, timeout=self.timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CallwatchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------
    def _request(
        self,
        server: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        files: Any = None,
        data: dict[str, Any] | None = None,
    ) -> httpx.Response:
        url = f"{server}{path}"
        try:
            resp = self._http.request(
                method,
                url,
                params=_clean(params or {}),
                json=json_body,
                content=content,
                headers=headers,
                files=files,
                data=data,
            )
        except httpx.TimeoutException as exc:
            raise ServerSlow(f"no answer within {self.timeout_s:g} s", None, server) from exc
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise ServerDown(str(exc) or type(exc).__name__, None, server) from exc
        except httpx.HTTPError as exc:
            raise ServerError(str(exc) or type(exc).__name__, None, server) from exc
        if resp.status_code >= 400:
            message, issues = _detail_of(resp)
            raise ServerError(message, resp.status_code, server, issues)
        return resp

    def _json(self, server: str, method: str, path: str, **kw: Any) -> Any:
        resp = self._request(server, method, path, **kw)
        try:
            return resp.json()
        except ValueError as exc:
            raise ServerError(
                f"{method} {path}: the answer is not JSON", resp.status_code, server
            ) from exc

    def _each(self, fn: Callable[[str], T]) -> list[tuple[str, T]]:
        """``fn`` on every server; one failing server is skipped unless all fail (then the
        first error is raised)."""
        results: list[tuple[str, T]] = []
        errors: list[ServerError] = []
        for s in self.servers:
            try:
                results.append((s, fn(s)))
            except ServerError as exc:
                errors.append(exc)
        if errors and not results:
            raise errors[0]
        return results

    def _for_call(self, call_id: str, fn: Callable[[str], T]) -> T:
        """``fn`` on the server that owns ``call_id``: the remembered one, else each in
        order (a 404 means: try the next)."""
        owner = self._owner.get(call_id)
        order = [owner] if owner else []
        order += [s for s in self.servers if s != owner]
        last: ServerError | None = None
        for s in order:
            try:
                out = fn(s)
            except ServerError as exc:
                if exc.status == 404 or (isinstance(exc, ServerDown) and len(order) > 1):
                    last = exc
                    continue
                raise
            self._owner[call_id] = s
            return out
        assert last is not None
        raise last

    @property
    def _first(self) -> str:
        return self.servers[0]

    # -- health ------------------------------------------------------------------------------
    def health(self) -> dict[str, str]:
        """{url: "ok" | what went wrong}; never raises."""
        out: dict[str, str] = {}
        for s in self.servers:
            try:
                body = self._json(s, "GET", "/healthz")
                out[s] = str(body.get("status", "ok")) if isinstance(body, dict) else "ok"
            except ServerSlow as exc:
                out[s] = f"slow: {exc.message}"
            except ServerDown as exc:
                out[s] = f"down: {exc.message}"
            except ServerError as exc:
                out[s] = f"error: {exc.message}"
        return out

    def metrics(self) -> dict[str, dict[str, Any]]:
        return {s: m for s, m in self._each(lambda s: self._json(s, "GET", "/metrics"))}

    # -- calls -------------------------------------------------------------------------------
    def calls(self, scope: str = "live", **filters: Any) -> list[dict[str, Any]]:
        """Call summaries of all servers, one per call_id (the first server to list it wins),
        newest first as the servers sort them; each gets ``server``."""
        params = {"scope": scope, **filters}
        merged: dict[str, dict[str, Any]] = {}
        for s, body in self._each(lambda s: self._json(s, "GET", "/v1/calls", params=params)):
            for c in body.get("calls", []) if isinstance(body, dict) else []:
                cid = c.get("call_id")
                if cid is None or cid in merged:
                    continue
                merged[cid] = {**c, "server": s}
                self._owner.setdefault(cid, s)
        rows = list(merged.values())
        if len(self.servers) > 1:
            rows.sort(key=_sort_key_started, reverse=True)
        return rows

    def call(self, call_id: str) -> dict[str, Any]:
        return dict(self._for_call(call_id, lambda s: self._json(s, "GET", f"/v1/calls/{call_id}")))

    def call_events(self, call_id: str, types: list[str] | None = None) -> list[dict[str, Any]]:
        params = {"types": types} if types else {}
        body = self._for_call(
            call_id, lambda s: self._json(s, "GET", f"/v1/calls/{call_id}/events", params=params)
        )
        return list(body.get("events", [])) if isinstance(body, dict) else list(body)

    def explain(self, call_id: str, rule_id: str) -> dict[str, Any]:
        return dict(
            self._for_call(
                call_id,
                lambda s: self._json(s, "GET", f"/v1/calls/{call_id}/explain/{rule_id}"),
            )
        )

    def export(self, call_id: str, fmt: str) -> bytes:
        return self._for_call(
            call_id,
            lambda s: (
                self._request(
                    s, "GET", f"/v1/calls/{call_id}/export", params={"format": fmt}
                ).content
            ),
        )

    def audio(self, call_id: str) -> tuple[bytes, str] | None:
        """(bytes, media type) of the call's recording, None when the server keeps none."""
        try:
            resp = self._for_call(
                call_id, lambda s: self._request(s, "GET", f"/v1/calls/{call_id}/audio")
            )
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise
        ctype = resp.headers.get("content-type", "audio/wav").split(";")[0].strip()
        return resp.content, ctype

    def search(self, q: str, agent: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params = {"q": q, "agent": agent, "limit": limit}
        hits: list[dict[str, Any]] = []
        seen: set[tuple[Any, ...]] = set()
        for s, body in self._each(lambda s: self._json(s, "GET", "/v1/search", params=params)):
            for h in body.get("hits", []):
                key = (h.get("call_id"), h.get("speaker"), h.get("t"), h.get("text"))
                if key not in seen:
                    seen.add(key)
                    hits.append({**h, "server": s})
        return hits[:limit]

    # -- alerts ------------------------------------------------------------------------------
    def alerts(self, status: str = "open", **filters: Any) -> dict[str, Any]:
        """{"alerts": newest first over all servers, "total", "counts"} (counts summed). A
        server whose reply only repeats an earlier one (the same server under two names) is
        counted once."""
        params = {"status": status, **filters}
        alerts: list[dict[str, Any]] = []
        seen: set[str] = set()
        replies: list[tuple[set[str], int, dict[str, int]]] = []
        total = 0
        counts: dict[str, int] = {}
        for s, body in self._each(lambda s: self._json(s, "GET", "/v1/alerts", params=params)):
            rows = list(body.get("alerts", []))
            ids = {alert_id(a) for a in rows}
            n = int(body.get("total", 0))
            c = {k: int(v) for k, v in (body.get("counts") or {}).items()}
            if any((ids, n, c) == r for r in replies) or (ids and ids <= seen):
                continue
            replies.append((ids, n, c))
            total += n
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            for a in rows:
                aid = alert_id(a)
                if aid in seen:
                    continue
                seen.add(aid)
                alerts.append({**a, "server": s})
                if a.get("call_id"):
                    self._owner.setdefault(a["call_id"], s)
        if len(self.servers) > 1:
            alerts.sort(key=lambda a: str(a.get("emitted_at") or ""), reverse=True)
        return {"alerts": alerts, "total": total, "counts": counts}

    def _alert_action(
        self, call_id: str, seq: int, action: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return dict(
            self._for_call(
                call_id,
                lambda s: self._json(
                    s, "POST", f"/v1/alerts/{call_id}/{int(seq)}/{action}", json_body=body
                ),
            )
        )

    def ack_alert(self, call_id: str, seq: int, note: str | None = None) -> dict[str, Any]:
        return self._alert_action(call_id, seq, "ack", {"note": note} if note else {})

    def assign_alert(
        self, call_id: str, seq: int, assignee: str, note: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"assignee": assignee}
        if note:
            body["note"] = note
        return self._alert_action(call_id, seq, "assign", body)

    def reopen_alert(self, call_id: str, seq: int) -> dict[str, Any]:
        return self._alert_action(call_id, seq, "reopen", {})

    # -- rules (shared by all servers: asked of the first) -----------------------------------
    def rule_packs(self) -> dict[str, Any]:
        return dict(self._json(self._first, "GET", "/v1/rules"))

    def rule_pack(self, pack: str) -> dict[str, Any]:
        return dict(self._json(self._first, "GET", f"/v1/rules/{pack}"))

    def save_pack(self, pack: str, yaml_text: str, comment: str = "") -> dict[str, Any]:
        return dict(
            self._json(
                self._first,
                "PUT",
                f"/v1/rules/{pack}",
                json_body={"yaml": yaml_text, "comment": comment},
            )
        )

    def delete_pack(self, pack: str, comment: str = "") -> dict[str, Any]:
        headers = {"X-Callwatch-Comment": comment} if comment else None
        return dict(self._json(self._first, "DELETE", f"/v1/rules/{pack}", headers=headers))

    def validate_pack(self, yaml_text: str) -> dict[str, Any]:
        return dict(
            self._json(self._first, "POST", "/v1/rules/validate", json_body={"yaml": yaml_text})
        )

    def test_rules(self, cases_yaml: str, draft_yaml: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"cases": cases_yaml}
        if draft_yaml is not None:
            body["yaml"] = draft_yaml
        return dict(self._json(self._first, "POST", "/v1/rules/test", json_body=body))

    def pack_versions(self, pack: str) -> list[dict[str, Any]]:
        body = self._json(self._first, "GET", f"/v1/rules/{pack}/versions")
        return list(body.get("versions", [])) if isinstance(body, dict) else list(body)

    def pack_version(self, pack: str, n: int) -> dict[str, Any]:
        return dict(self._json(self._first, "GET", f"/v1/rules/{pack}/versions/{int(n)}"))

    def restore_version(self, pack: str, n: int, comment: str = "") -> dict[str, Any]:
        return dict(
            self._json(
                self._first,
                "POST",
                f"/v1/rules/{pack}/versions/{int(n)}/restore",
                json_body={"comment": comment},
            )
        )

    # -- audits (asked of the first server) --------------------------------------------------
    def audit_folders(self) -> list[dict[str, Any]]:
        body = self._json(self._first, "GET", "/v1/audits/folders")
        return list(body.get("folders", [])) if isinstance(body, dict) else list(body)

    def start_folder_audit(
        self,
        folder: str,
        files: list[str] | None = None,
        pattern: str | None = None,
        agent_id: str | None = None,
        agent_channel: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"folder": folder}
        for k, v in (
            ("files", files),
            ("pattern", pattern),
            ("agent_id", agent_id),
            ("agent_channel", agent_channel),
        ):
            if v is not None:
                body[k] = v
        return dict(self._json(self._first, "POST", "/v1/audits", json_body=body))

    def upload_audit(
        self,
        files: list[tuple[str, bytes]],
        agent_id: str | None = None,
        agent_channel: str | None = None,
    ) -> dict[str, Any]:
        parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
        form = {k: v for k, v in (("agent_id", agent_id), ("agent_channel", agent_channel)) if v}
        return dict(self._json(self._first, "POST", "/v1/audits", files=parts, data=form))

    def audit_jobs(self) -> list[dict[str, Any]]:
        body = self._json(self._first, "GET", "/v1/audits")
        return list(body.get("jobs", [])) if isinstance(body, dict) else list(body)

    def audit_job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(self._first, "GET", f"/v1/audits/{job_id}"))

    def cancel_audit(self, job_id: str) -> dict[str, Any]:
        return dict(self._json(self._first, "POST", f"/v1/audits/{job_id}/cancel"))

    # -- agent assist ------------------------------------------------------------------------
    def playbooks(self) -> dict[str, Any]:
        return dict(self._json(self._first, "GET", "/v1/playbooks"))

    def feedback(self) -> dict[str, Any]:
        return dict(self._json(self._first, "GET", "/v1/suggestions/feedback"))
