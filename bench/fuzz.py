"""Fuzzing: every protocol adapter and the rule loader (atheris), the HTTP API (schemathesis).

Untrusted bytes reach callwatch in two places: telephony streams (the adapters) and rule
packs (QA edits them over HTTP). Whatever arrives, an adapter may only answer with a Feed or
a ProtocolError, and the loader with a RulePack or a RuleError naming file and line; the API
may answer 4xx but never 500. The oracles that say so live here, so the hypothesis tests
(tests/test_fuzz_*.py) and the coverage-guided runs check exactly the same things.

    python -m bench.fuzz --seconds 60            # atheris: each adapter and the loader
    python -m bench.fuzz --target twilio --seconds 10
    python -m bench.fuzz --api --examples 30     # schemathesis against the in-process app

Each atheris target runs in its own subprocess (a hang or a crash ends only that target);
inputs that broke an oracle are saved under a temp folder and their paths printed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio import SAMPLE_RATE
from audio.protocols.audiohook import AudioHookAdapter
from audio.protocols.base import ChannelDecoder, Feed, ProtocolError
from audio.protocols.raw import RawAdapter
from audio.protocols.twilio import TwilioAdapter
from audio.resample import StreamResampler

ADAPTERS: dict[str, Callable[[], Any]] = {
    "twilio": TwilioAdapter,
    "audiohook": AudioHookAdapter,
    "raw": RawAdapter,
}
ROLES = {"agent", "customer"}
TARGETS = (*ADAPTERS, "rules")
_LANG = re.compile(r"[a-z]{2,3}")


class Violation(AssertionError):
    """An oracle broke: the input made a component do something it must never do."""


@functools.cache
def peak_limit(rate: int) -> float:
    """The largest |sample| a channel at ``rate`` can put out: full scale times the 16 kHz
    resampler's gain on the worst input (the L1 norm of its busiest polyphase branch).

    Not 1.0: the anti-alias filter rings past full scale on square-ish input (1.03 on a real
    call at 8 kHz). The live path keeps those samples as the offline audit does, so both
    give the same transcript; clipping belongs in the shared resampler if anywhere."""
    rs = StreamResampler(rate)
    if rs.passthrough:
        return 1.0
    return float(max(np.abs(rs._taps[p :: rs.up]).sum() for p in range(rs.up))) + 1e-6


# -- protocol oracle ---------------------------------------------------------------------------
def decoders_of(adapter: Any) -> list[ChannelDecoder]:
    """The adapter's per-channel decoders in channel order (their clocks count input)."""
    decs = adapter._decoders
    if isinstance(decs, dict):
        order = adapter._index
        return [d for _, d in sorted(decs.items(), key=lambda kv: order[kv[0]])]
    return list(decs)


@dataclass
class Session:
    """One call's stream through one adapter, every output checked as it comes.

    ``send`` returns the Feed, or the ProtocolError the frame was refused with; anything
    else the adapter raises, and any malformed output, is a Violation. ``finish`` is the
    socket closing: each channel's output must then be exactly its input at 16 kHz.
    """

    protocol: str
    adapter: Any = None
    started: bool = False
    dead: bool = False  # a fatal ProtocolError: the server closes the socket
    ended: str | None = None
    out: dict[int, int] = field(default_factory=dict)  # 16 kHz samples out per channel
    audio: dict[int, list[np.ndarray]] = field(default_factory=dict)
    keep_audio: bool = False
    errors: int = 0
    _server_seq: int = 0

    def __post_init__(self) -> None:
        if self.adapter is None:
            self.adapter = ADAPTERS[self.protocol]()

    def send(self, frame: str | bytes) -> Feed | ProtocolError:
        try:
            if isinstance(frame, str):
                feed = self.adapter.on_text(frame)
            else:
                feed = self.adapter.on_bytes(frame)
        except ProtocolError as exc:
            self.errors += 1
            self._check_error(exc)
            if exc.fatal:
                self.dead = True
            return exc
        except Exception as exc:
            raise Violation(
                f"{self.protocol}: {type(exc).__name__} escaped (only ProtocolError may): {exc}"
            ) from exc
        self._check_feed(feed)
        return feed

    def finish(self) -> Feed:
        try:
            feed = self.adapter.on_disconnect()
        except Exception as exc:
            raise Violation(f"{self.protocol}: on_disconnect raised {exc!r}") from exc
        self._check_feed(feed)
        if feed.ended is None:
            raise Violation(f"{self.protocol}: on_disconnect did not end the call")
        for ch, dec in enumerate(decoders_of(self.adapter)):
            want = round(dec.samples_in * SAMPLE_RATE / dec.rate)
            if self.out.get(ch, 0) != want:
                raise Violation(
                    f"{self.protocol}: channel {ch} gave {self.out.get(ch, 0)} samples at "
                    f"16 kHz for {dec.samples_in} at {dec.rate} Hz (want {want})"
                )
        return feed

    # -- checks ---------------------------------------------------------------------------
    def _check_error(self, exc: ProtocolError) -> None:
        if not str(exc).strip():
            raise Violation(f"{self.protocol}: ProtocolError without a message")
        self._check_replies(exc.replies)
        if self.protocol == "twilio" and exc.replies:
            raise Violation("twilio: a unidirectional stream was answered")
        if self.protocol == "raw" and not exc.replies:
            raise Violation(f"raw: error {exc} was not answered with an error message")
        if self.protocol == "audiohook":
            types = [json.loads(r)["type"] for r in exc.replies if isinstance(r, str)]
            if "disconnect" not in types:
                raise Violation(f"audiohook: error {exc} was not answered with disconnect")

    def _check_feed(self, feed: Feed) -> None:
        if not isinstance(feed, Feed):
            raise Violation(f"{self.protocol}: returned {type(feed).__name__}, not a Feed")
        if feed.started is not None:
            if self.started:
                raise Violation(f"{self.protocol}: a second call started on one stream")
            self.started = True
            self._check_info(feed.started)
        info = self.adapter.info
        n_channels = len(info.channels) if info is not None else 0
        for item in feed.audio:
            ch, samples = item
            if not isinstance(ch, int) or not 0 <= ch < n_channels:
                raise Violation(f"{self.protocol}: audio for channel {ch!r} of {n_channels}")
            if not isinstance(samples, np.ndarray) or samples.dtype != np.float32:
                raise Violation(f"{self.protocol}: audio is not float32")
            if samples.ndim != 1:
                raise Violation(f"{self.protocol}: audio has shape {samples.shape}")
            limit = peak_limit(decoders_of(self.adapter)[ch].rate)
            if samples.size and not (
                np.isfinite(samples).all() and float(np.abs(samples).max()) <= limit
            ):
                raise Violation(
                    f"{self.protocol}: audio peak {np.abs(samples).max()} past {limit:.3f}"
                )
            self.out[ch] = self.out.get(ch, 0) + samples.size
            if self.keep_audio:
                self.audio.setdefault(ch, []).append(samples.copy())
        if self.protocol == "twilio" and feed.replies:
            raise Violation("twilio: a unidirectional stream was answered")
        self._check_replies(feed.replies)
        if not all(isinstance(w, str) and w for w in feed.warnings):
            raise Violation(f"{self.protocol}: a warning is not a message: {feed.warnings!r}")
        if feed.ended is not None:
            if not isinstance(feed.ended, str) or not feed.ended:
                raise Violation(f"{self.protocol}: ended={feed.ended!r}")
            self.ended = feed.ended

    def _check_replies(self, replies: list[str | bytes]) -> None:
        for r in replies:
            if not isinstance(r, str | bytes):
                raise Violation(f"{self.protocol}: reply of type {type(r).__name__}")
            if not isinstance(r, str):
                continue
            try:
                msg = json.loads(r)
            except ValueError as exc:
                raise Violation(f"{self.protocol}: reply is not JSON: {r[:200]!r}") from exc
            if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                raise Violation(f"{self.protocol}: reply without a type: {r[:200]!r}")
            if self.protocol == "audiohook":
                if msg.get("seq") != self._server_seq + 1:
                    raise Violation(
                        f"audiohook: reply seq {msg.get('seq')} after {self._server_seq}"
                    )
                self._server_seq = msg["seq"]

    def _check_info(self, info: Any) -> None:
        p = self.protocol
        if not isinstance(info.call_id, str) or not 0 < len(info.call_id) <= 128:
            raise Violation(f"{p}: call_id {info.call_id!r} is not 1-128 characters")
        if info.channels != ["mixed"] and (
            not 1 <= len(info.channels) <= 2
            or not set(info.channels) <= ROLES
            or len(set(info.channels)) != len(info.channels)
        ):
            raise Violation(f"{p}: channels {info.channels!r}")
        if len(decoders_of(self.adapter)) != len(info.channels):
            raise Violation(f"{p}: {len(info.channels)} channels but a different decoder count")
        if info.agent_id is not None and (
            not isinstance(info.agent_id, str) or not 0 < len(info.agent_id) <= 128
        ):
            raise Violation(f"{p}: agent_id {info.agent_id!r} is not 1-128 characters")
        if info.language is not None and not (
            isinstance(info.language, str) and _LANG.fullmatch(info.language)
        ):
            raise Violation(f"{p}: language {info.language!r} is not a language code")
        try:  # stored and served back by the HTTP API, which refuses NaN/Infinity
            json.dumps(info.metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise Violation(f"{p}: metadata is not strict JSON: {exc}") from exc


# -- rule loader oracle ------------------------------------------------------------------------
def check_rules(texts: dict[str, str]) -> list[Any]:
    """``load_texts`` must give packs or a RuleError whose every issue names file and line."""
    from qa_rules.loader import RuleError, load_texts
    from qa_rules.schema import RulePack

    try:
        packs = load_texts(texts)
    except RuleError as exc:
        if not exc.issues:
            raise Violation("RuleError without issues") from exc
        for issue in exc.issues:
            if issue.file not in texts:
                raise Violation(f"issue names file {issue.file!r}, not one given") from exc
            if not isinstance(issue.line, int) or issue.line < 1:
                raise Violation(f"issue without a line: {issue}") from exc
            if not isinstance(issue.message, str) or not issue.message.strip():
                raise Violation(f"issue without a message: {issue!r}") from exc
        return []
    except Exception as exc:
        raise Violation(f"rules: {type(exc).__name__} escaped (only RuleError may): {exc}") from exc
    if not all(isinstance(p, RulePack) for p in packs):
        raise Violation("load_texts returned something other than packs")
    for p in packs:  # a pack that loads must survive the round trip the registry makes
        json.dumps(p.model_dump(mode="json"), allow_nan=False)
    return packs


# -- atheris targets ---------------------------------------------------------------------------
SEP = b"\xff\xfe"  # never in UTF-8 text: splits a fuzz input into WebSocket frames


def frames_of(data: bytes) -> list[str | bytes]:
    """A fuzz input as frames: chunks split on SEP; an odd first byte makes a text frame."""
    out: list[str | bytes] = []
    for chunk in data.split(SEP)[:64]:
        if not chunk:
            continue
        body = chunk[1:]
        out.append(body.decode("utf-8", "replace") if chunk[0] & 1 else body)
    return out


def encode_frames(frames: list[str | bytes]) -> bytes:
    return SEP.join((b"\x01" + f.encode()) if isinstance(f, str) else b"\x00" + f for f in frames)


def seed_sessions(protocol: str) -> list[list[str | bytes]]:
    """Valid sessions of each protocol: the corpus atheris starts from."""
    import base64

    from audio.protocols import audiohook, twilio

    ulaw = bytes(range(0, 256, 3)) * 2
    if protocol == "twilio":
        start = twilio.start_message("MZ1", "CA1", {"agent_id": "a-1", "language": "en"})

        def media(seq: int, track: str, ts: int) -> str:
            body = {"track": track, "chunk": str(seq), "timestamp": str(ts)}
            body["payload"] = base64.b64encode(ulaw).decode()
            return twilio.client_message("media", seq, "MZ1", media=body)

        return [
            [
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
                start,
                media(2, "inbound", 0),
                media(3, "outbound", 0),
                media(4, "inbound", 200),
                twilio.client_message("mark", 5, "MZ1", mark={"name": "x"}),
                twilio.client_message(
                    "dtmf", 6, "MZ1", dtmf={"digit": "1", "track": "inbound_track"}
                ),
                twilio.client_message("stop", 7, "MZ1", stop={"callSid": "CA1"}),
            ]
        ]
    if protocol == "audiohook":
        offer = {"type": "audio", "format": "PCMU", "rate": 8000}
        params = {
            "organizationId": "o",
            "conversationId": "conv-1",
            "participant": {"id": "p", "ani": "+1", "aniName": "", "dnis": ""},
            "media": [{**offer, "channels": ["external", "internal"]}],
            "language": "en-US",
            "customConfig": {"agent_id": "a-1"},
        }
        m = audiohook.client_message
        return [
            [
                m("open", 1, "s-1", params),
                ulaw * 2,
                m("ping", 2, "s-1", serverseq=1),
                m("paused", 3, "s-1"),
                m("resumed", 4, "s-1", {"start": "PT1S", "discarded": "PT0.5S"}),
                ulaw,
                m("discarded", 5, "s-1", {"start": "PT2S", "discarded": "PT0.1S"}),
                m("update", 6, "s-1", {"language": "es-ES"}),
                m("error", 7, "s-1", {"code": 500, "message": "x"}),
                m("close", 8, "s-1", {"reason": "end"}),
            ]
        ]
    raw: dict[str, Any] = {"type": "start", "call_id": "c-1", "agent_id": "a-1"}
    raw["sample_rate"] = 8000
    return [
        [
            json.dumps({**raw, "encoding": "pcm16", "channels": ["agent", "customer"]}),
            bytes(range(256)) * 2,
            json.dumps({"type": "stop"}),
        ],
        [
            json.dumps({**raw, "encoding": "mulaw", "channels": ["mixed"], "language": "zh"}),
            ulaw,
            json.dumps({"type": "stop", "reason": "done"}),
        ],
    ]


DICTIONARY = [
    '"event"',
    '"media"',
    '"start"',
    '"stop"',
    '"connected"',
    '"mark"',
    '"dtmf"',
    '"payload"',
    '"timestamp"',
    '"track"',
    '"inbound"',
    '"outbound"',
    '"tracks"',
    '"mediaFormat"',
    '"sampleRate"',
    '"encoding"',
    '"customParameters"',
    '"sequenceNumber"',
    '"callSid"',
    '"streamSid"',
    '"version"',
    '"seq"',
    '"serverseq"',
    '"id"',
    '"type"',
    '"parameters"',
    '"open"',
    '"ping"',
    '"paused"',
    '"resumed"',
    '"discarded"',
    '"update"',
    '"close"',
    '"error"',
    '"PCMU"',
    '"external"',
    '"internal"',
    '"conversationId"',
    '"customConfig"',
    '"language"',
    '"PT1.5S"',
    '"sample_rate"',
    '"channels"',
    '"mixed"',
    '"pcm16"',
    '"mulaw"',
    '"alaw"',
    '"call_id"',
    '"agent_id"',
    "NaN",
    "Infinity",
    "-1",
    "1e999",
    "18446744073709551616",
    "null",
    "true",
    "[]",
    "{}",
    "pack:",
    "rules:",
    "kind:",
    "id:",
    "phrase",
    "silence",
    "speech_rate",
    "emotion",
    "talk_over",
    "talk_ratio",
    "hold",
    "pii",
    "composite",
    "regex:",
    "phrases:",
    "mode:",
    "required",
    "forbidden",
    "when:",
    "after:",
    "within_s:",
    "all:",
    "any:",
    "not:",
    "rule:",
    "said:",
    "window:",
    "first_s:",
    "last_s:",
    "message:",
    "&a",
    "*a",
    "!!binary",
    "<<:",
    "? ",
    ".nan",
    ".inf",
    "2001-13-45",
    "{t}",
    "{0}",
]


def protocol_target(protocol: str) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        frames = frames_of(data)
        mode = data[0] % 3 if data else 0
        prefix = seed_sessions(protocol)[0][:1] if mode else []  # past the handshake
        s = Session(protocol)
        for f in [*prefix, *frames]:
            s.send(f)
            if s.dead:
                break
        s.finish()

    return run


def rules_target(data: bytes) -> None:
    parts = [p.decode("utf-8", "replace") for p in data.split(SEP)[:4]]
    check_rules({f"pack{i}.yaml": t for i, t in enumerate(parts)})


def seed_rules() -> list[bytes]:
    from qa_rules.loader import BUILTIN_PACKS

    seeds = [p.read_bytes() for p in sorted(BUILTIN_PACKS.glob("*.yaml"))]
    seeds.append(
        b"pack: a\nrules:\n  - {id: s, kind: silence, min_s: 4}\n"
        b"  - id: c\n    kind: composite\n    when: {all: [{rule: s}, {said: [hi]}]}\n"
        + SEP
        + b"pack: b\nrules:\n  - {id: t, kind: phrase, mode: required, regex: ['a+b'],"
        b" phrases: [hello]}\n"
    )
    return seeds


@dataclass
class Tally:
    """What one target did, written to a JSON file so the parent can read it after a crash."""

    path: Path
    cases: int = 0
    failures: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)
    _last: float = 0.0

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last > 0.5:
            self._last = now
            data = {"cases": self.cases, "failures": self.failures, "kinds": self.kinds}
            self.path.write_text(json.dumps({**data, "saved": self.saved}))


# The child starts here: the code under test must be imported inside instrument_imports
# (for coverage), so before this module, which imports it.
_CHILD = """
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["audio", "qa_rules", "yaml"]):
    import audio.protocols.audiohook, audio.protocols.raw, audio.protocols.twilio
    import qa_rules.loader, qa_rules.schema

from bench.fuzz import run_atheris

run_atheris(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
"""


def run_atheris(target: str, seconds: int, workdir: Path) -> None:
    """Child process: coverage-guided fuzzing of one target until ``seconds`` run out."""
    import atheris

    fn = rules_target if target == "rules" else protocol_target(target)
    crashes = workdir / "crashes"
    corpus = workdir / "corpus"
    crashes.mkdir(parents=True, exist_ok=True)
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = (
        seed_rules()
        if target == "rules"
        else [b"\x01" + encode_frames(s) for s in seed_sessions(target)]
    )
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    dict_file = workdir / "tokens.dict"
    dict_file.write_text("\n".join(json.dumps(t) for t in DICTIONARY) + "\n")
    tally = Tally(workdir / "tally.json")

    def one(data: bytes) -> None:
        tally.cases += 1
        try:
            fn(data)
        except Violation as exc:
            kind = str(exc).split(":")[0] + ": " + _signature(exc)
            tally.failures += 1
            if kind not in tally.kinds:  # keep the first input of each kind of failure
                path = crashes / f"{target}-{len(tally.kinds)}.bin"
                path.write_bytes(data)
                (crashes / f"{path.name}.txt").write_text("".join(traceback.format_exception(exc)))
                tally.saved.append(str(path))
            tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
            tally.write(force=True)
        tally.write()

    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        "-timeout=20",  # one input running 20 s is a hang: libFuzzer saves it and stops
        "-rss_limit_mb=3072",
        "-max_len=65536",
        f"-artifact_prefix={crashes}/",
        f"-dict={dict_file}",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(argv, one)
    atheris.Fuzz()


def _signature(exc: BaseException) -> str:
    """A short, stable name for a failure: its first line without the input's values."""
    cause = exc.__cause__
    text = f"{type(cause).__name__} " if cause is not None else ""
    first = str(exc).splitlines()[0] if str(exc) else ""
    msg = re.sub(r"'[^']*'|\"[^\"]*\"|#x[0-9a-fA-F]+|-?\d[\d.e+-]*", "_", first.split(":", 1)[-1])
    return (text + msg.strip())[:120]


def run_target(target: str, seconds: int, root: Path) -> dict[str, Any]:
    """Parent: one target in a subprocess; a crash or hang there is a failure, not our end."""
    workdir = root / target
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", _CHILD, target, str(seconds), str(workdir)]
    log = workdir / "libfuzzer.log"
    with log.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=seconds * 3 + 120)
    tally_path = workdir / "tally.json"
    tally = json.loads(tally_path.read_text()) if tally_path.exists() else {}
    text = log.read_text(errors="replace")
    execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
    crashed = [str(p) for p in (workdir / "crashes").glob("*-*") if not p.name.endswith(".txt")]
    artifacts = [p for p in crashed if Path(p).name.split("-")[0] in ("crash", "timeout", "oom")]
    failures = int(tally.get("failures", 0)) + len(artifacts)
    return {
        "target": target,
        "cases": int(execs.group(1)) if execs else int(tally.get("cases", 0)),
        "failures": failures,
        "kinds": tally.get("kinds", {}),
        "saved": [*tally.get("saved", []), *artifacts],
        "exit": proc.returncode,
        "log": str(log),
    }


# -- schemathesis ------------------------------------------------------------------------------
# Operations kept out: they start Whisper work (audits of recordings).
API_EXCLUDED = {"POST /v1/audits"}


def api_operations(schema: Any) -> list[Any]:
    """The schema's operations, minus the excluded ones, in a stable order."""
    ops = [r.ok() for r in schema.get_all_operations()]
    return sorted((op for op in ops if op.label not in API_EXCLUDED), key=lambda op: op.label)


def api_labels() -> list[str]:
    """Operation labels from a bare app (no model loaded): for test parametrization."""
    import schemathesis

    from assist.server import ServerConfig, create_app

    spec = create_app(ServerConfig(auth=False)).openapi()
    return [op.label for op in api_operations(schemathesis.openapi.from_dict(spec))]


def check_api_case(client: Any, case: Any) -> str | None:
    """Send one generated request; None if the answer is no 5xx and matches its schema."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import Failure, FailureGroup
    from schemathesis.specs.openapi.checks import response_schema_conformance

    kw = case.as_transport_kwargs(base_url="http://testserver")
    body = {k: kw[k] for k in ("json", "data", "files") if k in kw}
    if "data" in body:
        body["content"] = body.pop("data")
    if kw.get("cookies"):
        body["cookies"] = kw["cookies"]
    resp = client.request(
        kw["method"], kw["url"], params=kw.get("params"), headers=kw.get("headers"), **body
    )
    try:
        case.validate_response(resp, checks=[not_a_server_error, response_schema_conformance])
    except FailureGroup as group:
        what = "; ".join(
            f"{f.code} {f.title}: {_first_line(f.message)}" if isinstance(f, Failure) else str(f)
            for f in group.exceptions
        )
        return f"{case.operation.label} -> {resp.status_code}: {what[:300]}"
    return None


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _api_test(
    op: Any,
    client: Any,
    counts: dict[str, Any],
    failures: dict[str, str],
    examples: int,
    derandomize: bool,
) -> Callable[[], None]:
    """A hypothesis test sending ``examples`` generated requests to one operation."""
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        counts["cases"] += 1
        problem = check_api_case(client, case)
        if problem is not None:
            counts["failures"] += 1
            kind = failure_kind(problem)
            if kind not in failures:
                failures[kind] = f"{problem}\n      {case.as_curl_command()}"
            kinds[kind] = kinds.get(kind, 0) + 1

    kinds: dict[str, int] = counts.setdefault("kinds", {})
    return run


def failure_kind(problem: str) -> str:
    """'OP -> 422: ST108 Response violates schema: <detail>' -> the part before the detail."""
    head, _, rest = problem.partition(": ")
    check, _, _ = rest.partition(": ")
    return f"{head}: {check}"


def run_api(examples: int, seed: int | None) -> dict[str, Any]:
    """schemathesis against the in-process app (auth off, a temp SQLite store)."""
    import schemathesis
    from starlette.testclient import TestClient

    from assist.server import App, ServerConfig, create_app
    from models.asr import WhisperAsr
    from qa_rules.loader import load_packs

    home = Path(tempfile.mkdtemp(prefix="callwatch-fuzz-api-"))
    os.environ["CALLWATCH_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = ServerConfig(auth=False, db_url=f"sqlite:///{home / 'fuzz.db'}", rules_poll_s=0)
    state = App(config, asr=WhisperAsr(), packs=load_packs())
    per_op: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}  # first example of each kind of failure
    with TestClient(create_app(state=state), raise_server_exceptions=False) as client:
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
        for op in api_operations(schema):
            counts = per_op.setdefault(op.label, {"cases": 0, "failures": 0, "kinds": {}})
            _api_test(op, client, counts, failures, examples, seed is not None)()
    state.close()
    return {"operations": per_op, "failures": failures}


# -- command line ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="atheris time per target")
    ap.add_argument("--target", action="append", choices=TARGETS, help="only these targets")
    ap.add_argument("--api", action="store_true", help="run schemathesis against the app")
    ap.add_argument("--no-atheris", action="store_true", help="skip the atheris targets")
    ap.add_argument("--examples", type=int, default=30, help="schemathesis cases per operation")
    ap.add_argument("--seed", type=int, default=None, help="derandomize schemathesis")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="callwatch-fuzz-"))
    total_cases = total_failures = 0
    if not args.no_atheris:
        for target in args.target or TARGETS:
            r = run_target(target, args.seconds, root)
            total_cases += r["cases"]
            total_failures += r["failures"]
            print(f"[{target}] atheris {args.seconds} s")
            print(f"  cases: {r['cases']}")
            print(f"  failures: {r['failures']}")
            for kind, n in r["kinds"].items():
                print(f"    {n} x {kind}")
            for path in r["saved"]:
                print(f"    input: {path}")
            if r["exit"] not in (0,) and not r["saved"]:
                print(f"  exit code {r['exit']}; see {r['log']}")
    if args.api:
        r = run_api(args.examples, args.seed)
        cases = sum(c["cases"] for c in r["operations"].values())
        fails = sum(c["failures"] for c in r["operations"].values())
        total_cases += cases
        total_failures += fails
        print(f"[api] schemathesis, {len(r['operations'])} operations, <= {args.examples} each")
        print(f"  cases: {cases}")
        print(f"  failures: {fails}")
        kinds = {k: n for c in r["operations"].values() for k, n in c.get("kinds", {}).items()}
        for kind, example in r["failures"].items():
            print(f"    {kinds.get(kind, 0)} x {kind}\n      e.g. {example}")
    print(f"summary: cases: {total_cases}  failures: {total_failures}  work folder: {root}")
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
