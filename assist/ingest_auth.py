"""The telephony platforms' own credentials on an ingest WebSocket's upgrade request.

Twilio Media Streams sign the URL they connect to (``X-Twilio-Signature``: base64 of the
HMAC-SHA1 of the full URL, keyed with the account's auth token; a GET has no parameters to
append). Genesys AudioHook sends an API key (``X-API-KEY``) and, when the integration has a
client secret, signs the request with an HTTP message signature (``Signature-Input`` and
``Signature``, hmac-sha256, ``keyid`` = the API key). Both sides are here, the check for the
server and the signing for ``callwatch replay`` and the tests, so the two cannot drift.

References (docs/security.md): https://www.twilio.com/docs/usage/security#validating-requests ;
https://developer.genesys.cloud/devapps/audiohook/session-walkthrough#establishing-connection
and github.com/purecloudlabs/audiohook-reference-implementation, app/src/authenticator.ts
(AudioHook; the signature follows draft-ietf-httpbis-message-signatures, now RFC 9421, with
structured field values from RFC 8941).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# -- Twilio --------------------------------------------------------------------------------

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def twilio_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a request to ``url`` (POST parameters,
    if any, are appended sorted by name; a WebSocket upgrade is a GET and has none)."""
    params = params or {}
    data = url + "".join(k + params[k] for k in sorted(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def _url_variants(url: str) -> list[str]:
    """``url`` as given, without (or with) the scheme's default port, with and without a
    trailing '/': proxies and Twilio's own libraries disagree on both."""
    return [v for u in _port_variants(url) for v in dict.fromkeys((u, _slash(u)))]


def _slash(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit(parts._replace(path=path))


def _port_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    out = [url]
    host = parts.netloc.rsplit("@", 1)[-1]
    default = _DEFAULT_PORTS.get(parts.scheme)
    if parts.port is not None:
        bare = parts.netloc[: parts.netloc.rfind(":")]
        out.append(urlunsplit(parts._replace(netloc=bare)))
    elif default is not None and host:
        out.append(urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    return out


def twilio_valid(auth_token: str, url: str, signature: str) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` (compared in constant time)."""
    if not auth_token or not signature:
        return False
    given = signature.strip().encode("ascii", "replace")
    ok = False
    for candidate in _url_variants(url):
        ok |= hmac.compare_digest(twilio_signature(auth_token, candidate).encode("ascii"), given)
    return ok


# -- structured field values (RFC 8941), the subset signatures use ---------------------------


class Token(str):
    """An sf-token (unquoted), as opposed to an sf-string."""


Bare = str | int | bool | bytes | Token
Params = list[tuple[str, Bare]]


@dataclass
class Item:
    value: Bare | list[Item]  # a list: an inner list of items
    params: Params


class SfError(ValueError):
    """A header that is not a valid structured field value."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self, chars: str = " ") -> None:
        while self.peek() and self.peek() in chars:
            self.i += 1

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise SfError(f"expected {ch!r} at {self.i} in {self.s!r}")
        self.i += 1

    def key(self) -> str:
        start = self.i
        if not (self.peek().islower() or self.peek() == "*"):
            raise SfError(f"expected a key at {self.i} in {self.s!r}")
        while self.peek() and (
            self.peek().islower() or self.peek().isdigit() or self.peek() in "_-.*"
        ):
            self.i += 1
        return self.s[start : self.i]

    def bare(self) -> Bare:
        ch = self.peek()
        if ch == '"':
            self.i += 1
            out: list[str] = []
            while True:
                c = self.peek()
                if not c:
                    raise SfError("unterminated string")
                self.i += 1
                if c == "\\":
                    nxt = self.peek()
                    if nxt not in ('"', "\\"):
                        raise SfError("bad escape in string")
                    out.append(nxt)
                    self.i += 1
                elif c == '"':
                    return "".join(out)
                elif not (" " <= c <= "~"):
                    raise SfError("non-ASCII character in string")
                else:
                    out.append(c)
        if ch == ":":
            end = self.s.find(":", self.i + 1)
            if end < 0:
                raise SfError("unterminated byte sequence")
            raw = self.s[self.i + 1 : end]
            self.i = end + 1
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise SfError(f"bad base64 in byte sequence: {exc}") from None
        if ch == "?":
            self.i += 1
            flag = self.peek()
            if flag not in ("0", "1"):
                raise SfError("bad boolean")
            self.i += 1
            return flag == "1"
        if ch == "-" or ch.isdigit():
            start = self.i
            self.i += 1
            while self.peek().isdigit():
                self.i += 1
            text = self.s[start : self.i]
            if text == "-" or len(text.lstrip("-")) > 15:
                raise SfError("bad integer")
            return int(text)
        if ch.isalpha() or ch == "*":
            start = self.i
            while self.peek() and (self.peek().isalnum() or self.peek() in "!#$%&'*+-.^_`|~:/"):
                self.i += 1
            return Token(self.s[start : self.i])
        raise SfError(f"unexpected {ch!r} at {self.i} in {self.s!r}")

    def params(self) -> Params:
        out: Params = []
        while self.peek() == ";":
            self.i += 1
            self.skip()
            k = self.key()
            v: Bare = True
            if self.peek() == "=":
                self.i += 1
                v = self.bare()
            out.append((k, v))
        return out

    def item_or_list(self) -> Item:
        if self.peek() != "(":
            return Item(self.bare(), self.params())
        self.i += 1
        items: list[Item] = []
        while True:
            self.skip()
            if self.peek() == ")":
                self.i += 1
                return Item(items, self.params())
            items.append(Item(self.bare(), self.params()))
            if self.peek() not in (" ", ")"):
                raise SfError(f"bad inner list at {self.i} in {self.s!r}")

    def dictionary(self) -> dict[str, Item]:
        out: dict[str, Item] = {}
        self.skip(" \t")
        while self.peek():
            k = self.key()
            if self.peek() == "=":
                self.i += 1
                out[k] = self.item_or_list()
            else:
                out[k] = Item(True, self.params())
            self.skip(" \t")
            if not self.peek():
                break
            self.expect(",")
            self.skip(" \t")
            if not self.peek():
                raise SfError("trailing comma")
        return out


def parse_dictionary(text: str) -> dict[str, Item]:
    """An sf-dictionary header value (raises SfError)."""
    return _Parser(text.strip()).dictionary()


def _ser_bare(v: Bare) -> str:
    if isinstance(v, bool):
        return "?1" if v else "?0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return ":" + base64.b64encode(v).decode("ascii") + ":"
    if isinstance(v, Token):
        return str(v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ser_params(params: Params) -> str:
    return "".join(f";{k}" if v is True else f";{k}={_ser_bare(v)}" for k, v in params)


def serialize(item: Item) -> str:
    """An item or inner list back to its canonical text (the ``@signature-params`` line)."""
    if isinstance(item.value, list):
        inner = " ".join(serialize(i) for i in item.value)
        return f"({inner}){_ser_params(item.params)}"
    return _ser_bare(item.value) + _ser_params(item.params)


# -- AudioHook ------------------------------------------------------------------------------

# What Genesys covers and what we require to be covered (a signature over less proves less).
AUDIOHOOK_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
MAX_SIGNATURE_AGE_S = 10.0  # a signature is good for this long after it was made ...
CLOCK_SKEW_S = 3.0  # ... give or take the two clocks' disagreement


def secret_key(client_secret: str) -> bytes:
    """The HMAC key: the client secret is given base64-encoded (as Genesys shows it)."""
    try:
        return base64.b64decode(client_secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "the AudioHook client secret must be base64 (as Genesys Cloud shows it)"
        ) from None


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header's canonical value: trimmed, repeated fields joined with ', '."""
    getlist = getattr(headers, "getlist", None)
    values = list(getlist(name)) if getlist is not None else []
    if not values:
        v = headers.get(name)
        values = [v] if v is not None else []
    if not values:
        return None
    return ", ".join(" ".join(v.strip().split("\r\n")) for v in values)


def _derived(name: str, target: str, authority: str) -> str | None:
    path, _, query = target.partition("?")
    return {
        "@request-target": target,
        "@authority": authority.lower(),
        "@method": "GET",
        "@path": path,
        "@query": "?" + query,
    }.get(name)


def signature_base(
    components: list[Item], params: Params, headers: Mapping[str, str], target: str, authority: str
) -> str:
    """The text that is signed (raises ValueError naming a component it cannot resolve)."""
    lines = []
    for comp in components:
        name = comp.value
        if not isinstance(name, str) or isinstance(name, Token) or comp.params:
            raise ValueError(f"unsupported covered component {serialize(comp)}")
        value = _derived(name, target, authority) if name.startswith("@") else None
        if name.startswith("@") and value is None:
            raise ValueError(f"unsupported derived component {name!r}")
        if value is None:
            value = header_value(headers, name)
            if value is None:
                raise ValueError(f"covered header {name!r} is missing")
        lines.append(f'"{name}": {value}')
    lines.append('"@signature-params": ' + serialize(Item(components, params)))
    return "\n".join(lines)


def audiohook_sign(
    headers: Mapping[str, str],
    *,
    target: str,
    authority: str,
    client_secret: str,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = None,
    label: str = "sig1",
) -> dict[str, str]:
    """``Signature-Input`` and ``Signature`` for an upgrade request with ``headers`` (which
    must hold the AudioHook headers and ``X-API-KEY``), as Genesys Cloud makes them."""
    lower = {k.lower(): v for k, v in headers.items()}
    created = int(time.time()) if created is None else created
    params: Params = [
        ("keyid", lower["x-api-key"]),
        ("nonce", nonce or secrets.token_urlsafe(24)),
        ("alg", "hmac-sha256"),
        ("created", created),
        ("expires", created + 60 if expires is None else expires),
    ]
    comps = [Item(c, []) for c in AUDIOHOOK_COMPONENTS]
    base = signature_base(comps, params, lower, target, authority)
    mac = hmac.new(secret_key(client_secret), base.encode("utf-8"), hashlib.sha256).digest()
    return {
        "Signature-Input": f"{label}={serialize(Item(comps, params))}",
        "Signature": f"{label}={_ser_bare(mac)}",
    }


class AudioHookVerifier:
    """Checks AudioHook upgrade requests: the API key, and the signature when a client
    secret is configured. Nonces seen in the last minute are refused (a replayed request)."""

    def __init__(self, api_keys: list[str], client_secret: str | None) -> None:
        self.api_keys = [k for k in api_keys if k]
        self.key = secret_key(client_secret) if client_secret else None
        self._nonces: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(
        self, headers: Mapping[str, str], target: str, authority: str, now: float | None = None
    ) -> str | None:
        """None when the request may stream, else why not (said to the client and logged)."""
        api_key = header_value(headers, "x-api-key")
        if not api_key:
            return "AudioHook needs an X-API-KEY header"
        known = False
        for k in self.api_keys:
            known |= hmac.compare_digest(k.encode("utf-8"), api_key.encode("utf-8"))
        if not known:
            return "unknown AudioHook API key"
        if self.key is None:
            return None
        return self._check_signature(headers, api_key, target, authority, now or time.time())

    def _check_signature(
        self, headers: Mapping[str, str], api_key: str, target: str, authority: str, now: float
    ) -> str | None:
        sig_input = header_value(headers, "signature-input")
        sig = header_value(headers, "signature")
        if not sig_input or not sig:
            return "AudioHook request is not signed (Signature and Signature-Input needed)"
        try:
            inputs, sigs = parse_dictionary(sig_input), parse_dictionary(sig)
        except SfError as exc:
            return f"malformed signature header: {exc}"
        label = next((k for k in inputs if k in sigs), None)
        if label is None:
            return "no Signature matches a Signature-Input label"
        spec, mac = inputs[label], sigs[label].value
        if not isinstance(spec.value, list) or not isinstance(mac, bytes):
            return "malformed signature header"
        p: dict[str, Any] = dict(spec.params)
        if p.get("alg", "hmac-sha256") != "hmac-sha256":
            return f"unsupported signature algorithm {p.get('alg')!r}"
        if p.get("keyid") != api_key:
            return "signature keyid does not match X-API-KEY"
        created, expires, nonce = p.get("created"), p.get("expires"), p.get("nonce")
        if not isinstance(created, int) or isinstance(created, bool):
            return "signature has no 'created' time"
        if not isinstance(nonce, str) or not nonce:
            return "signature has no nonce"
        if created > now + CLOCK_SKEW_S:
            return "signature 'created' is in the future"
        if now > created + MAX_SIGNATURE_AGE_S + CLOCK_SKEW_S:
            return "signature expired (made more than 10 s ago)"
        if (
            isinstance(expires, int)
            and not isinstance(expires, bool)
            and now > expires + CLOCK_SKEW_S
        ):
            return "signature expired"
        covered = {i.value for i in spec.value}
        missing = [c for c in AUDIOHOOK_COMPONENTS if c not in covered]
        if missing:
            return f"signature does not cover {', '.join(missing)}"
        try:
            base = signature_base(spec.value, spec.params, headers, target, authority)
        except ValueError as exc:
            return str(exc)
        assert self.key is not None
        want = hmac.new(self.key, base.encode("utf-8"), hashlib.sha256).digest()
        if not hmac.compare_digest(want, mac):
            return "AudioHook signature does not match"
        with self._lock:
            self._nonces = {n: t for n, t in self._nonces.items() if t > now}
            if nonce in self._nonces:
                return "signature nonce already used (a replayed request)"
            self._nonces[nonce] = now + 2 * (MAX_SIGNATURE_AGE_S + CLOCK_SKEW_S)
        return None
