"""The ``callwatch`` command line."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assist.cli_assist import add_assist_commands, playbooks_or_report
from assist.cli_board import add_board_commands
from assist.cli_trust import add_trust_commands

if TYPE_CHECKING:
    from models.emotion import EmotionAnalyzer
    from qa_rules.schema import RulePack

os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("callwatch")


def _packs_or_report(path: str | Path) -> list[RulePack] | None:
    """The packs under ``path``, or None after printing every problem (FILE:LINE: FIELD)."""
    from qa_rules.loader import RuleError, load_packs

    try:
        return load_packs(path)
    except RuleError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        print(f"{len(exc.issues)} problem(s); nothing loaded", file=sys.stderr)
        return None


def _cmd_rules_check(args: argparse.Namespace) -> int:
    packs = _packs_or_report(args.dir)
    if packs is None:
        return 1
    for p in packs:
        kinds: dict[str, int] = {}
        for r in p.rules:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        print(f"ok: pack {p.pack} v{p.version} ({p.language}): {len(p.rules)} rules ({summary})")
    return 0


def _cmd_rules_test(args: argparse.Namespace) -> int:
    import json

    from qa_rules.cases import Case, load_cases, run_cases, summary
    from qa_rules.loader import RuleError

    packs = _packs_or_report(args.dir)
    if packs is None:
        return 1
    cases: list[Case] = []
    issues = []
    for path in args.cases:
        try:
            cases.extend(load_cases(path, packs))
        except RuleError as exc:
            issues.extend(exc.issues)
    if issues:
        for issue in issues:
            print(f"error: {issue}", file=sys.stderr)
        print(f"{len(issues)} problem(s) in the cases; nothing run", file=sys.stderr)
        return 1
    results = run_cases(packs, cases)
    failed = sum(1 for r in results if not r.passed)
    if args.format == "json":
        print(json.dumps(summary(results), indent=2, ensure_ascii=False))
        return 1 if failed else 0
    for r in results:
        if r.passed:
            print(f"PASS {r.name}")
            continue
        print(f"FAIL {r.name}  ({r.case.where})")
        for f in r.failures:
            print(f"    {f}")
        if r.alerts:
            print("    alerts that fired:")
            for a in r.alerts:
                print(f"      {a.t:7.2f} s  {a.rule_id}: {a.message}")
        else:
            print("    no alerts fired")
    n = len(results)
    print(f"{n} case{'' if n == 1 else 's'}: {n - failed} passed, {failed} failed")
    return 1 if failed else 0


def default_rules_dir() -> Path:
    """The server's rules folder once it has been seeded, else the built-in packs."""
    from assist.store import callwatch_home
    from qa_rules.loader import BUILTIN_PACKS

    folder = callwatch_home() / "rules"
    return folder if folder.is_dir() and any(folder.glob("*.y*ml")) else BUILTIN_PACKS


def _cmd_rules_explain(args: argparse.Namespace) -> int:
    import json

    from assist.store import Store, StoreError
    from qa_rules.explain import explain
    from qa_rules.loader import RuleError, load_packs

    try:
        packs = load_packs(args.rules) if args.rules else load_packs(default_rules_dir())
        report = Store(args.db).get_report(args.call)
    except RuleError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if report is None:
        print(f"error: no call {args.call!r} in the store", file=sys.stderr)
        return 1
    try:
        result = explain(args.rule_id, packs, report)
    except KeyError:
        known = sorted(r.id for p in packs for r in p.rules)
        close = difflib.get_close_matches(args.rule_id, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"error: no rule {args.rule_id!r} in the packs{hint}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(
            f"call {args.call} ({report.get('duration_s', 0):.0f} s), packs {report.get('rule_packs')}"
        )
        print("\n".join(result.lines()))
    return 0


def _emotion_analyzer(args: argparse.Namespace) -> EmotionAnalyzer | None:
    """The emotion models the flags ask for (None: off). Raises ModelNotFoundError."""
    if args.no_emotion:
        return None
    from models.emotion import EmotionAnalyzer

    return EmotionAnalyzer(args.emotion_model)


def _add_emotion_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-emotion", action="store_true", help="skip emotion detection (and emotion rules)"
    )
    p.add_argument(
        "--emotion-model",
        metavar="DIR",
        default=os.environ.get("CALLWATCH_EMOTION_MODEL"),
        help="a local speech-emotion checkpoint (wav2vec2/HuBERT audio classifier) to use "
        "instead of the built-in prosody score",
    )


def _add_assist_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-assist", action="store_true", help="no playbook suggestions (rule prompts stay)"
    )
    p.add_argument(
        "--playbook",
        metavar="PATH",
        help="agent-assist playbook file or folder (default: the built-in contact-center one)",
    )


def _cmd_audit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from assist.audit import AuditOptions, audit_file
    from assist.diarization import DiarizeOptions
    from assist.language import LanguageModels
    from assist.report import to_csv, to_html, to_json, to_table
    from assist.store import Store, StoreError
    from audio.errors import AudioError
    from audio.vad import VadConfig
    from models.diarize.pyannote_backend import PyannoteUnavailableError
    from models.locator import ModelNotFoundError
    from qa_rules.loader import RuleError, load_packs

    if args.customer and len(args.files) != 1:
        print("error: --customer pairs with exactly one agent FILE", file=sys.stderr)
        return 2
    try:
        packs = load_packs(args.rules) if args.rules else load_packs()
    except RuleError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 2
    try:
        asr = LanguageModels(audit_languages(args), threads=args.threads, beam_size=args.beam_size)
    except (ModelNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = None
    if not args.no_store:
        try:
            store = Store(args.db)
        except StoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        opts = AuditOptions(
            agent_channel=args.agent_channel,
            vad=VadConfig(aggressiveness=args.vad),
            diarize=DiarizeOptions(args.diarize, args.pyannote_dir),
            voiceprints=_voiceprints(args.db, args.agent),
            agent_id=args.agent[0] if args.agent and len(args.agent) == 1 else None,
        )
        if args.diarize == "pyannote":
            opts.diarize.diarizer()  # load (or refuse) the pipeline before any file is read
    except (ValueError, StoreError, PyannoteUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        emotion = _emotion_analyzer(args)
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    assist = None
    if not args.no_assist:
        from assist.suggest import AssistLibrary
        from models.embed import shared_embedder

        books = playbooks_or_report(args.playbook)
        if books is None:
            return 2
        assist = AssistLibrary(books, shared_embedder())

    # Read headers first so the progress bar knows the total audio time.
    total = 0.0
    durations: dict[str, float] = {}
    for f in args.files:
        try:
            import soundfile as sf

            durations[f] = float(sf.info(f).duration)
        except Exception:  # unreadable here: audit_file reports the real reason
            durations[f] = 0.0
        total += durations[f]

    reports: list[dict[str, Any]] = []
    failures = 0
    show = not args.quiet
    with tqdm(
        total=round(total, 1),
        unit="audio s",
        disable=not show or None,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        for f in args.files:
            bar.set_description(Path(f).name[:30])
            try:
                report = audit_file(
                    f,
                    packs,
                    asr,
                    args.customer,
                    opts,
                    progress=lambda s: bar.update(round(s, 1)),
                    emotion=emotion,
                    assist=assist,
                )
            except AudioError as exc:
                failures += 1
                tqdm.write(f"error: {exc}", file=sys.stderr)
                continue
            reports.append(report)
            if store is not None:
                try:
                    store.save_report(report)
                except StoreError as exc:
                    failures += 1
                    tqdm.write(f"error: {exc}", file=sys.stderr)

    if args.format == "json":
        text = to_json(reports, with_events=args.events)
    elif args.format == "csv":
        text = to_csv(reports)
    elif args.format == "html":
        text = to_html(reports)
    else:
        text = to_table(reports, transcript=not args.no_transcript)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(reports)} report(s) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if store is not None and reports:
        print(f"stored {len(reports)} call(s) in {store.url}", file=sys.stderr)
    if failures:
        print(f"{failures} of {len(args.files)} file(s) failed", file=sys.stderr)
        return 1
    return 0


def _voiceprints(db: str | None, agent_ids: list[str] | None) -> dict[str, Any]:
    """Enrolled agents' voiceprints (all, or only ``agent_ids``); unknown ids are an error."""
    from assist.store import Store

    prints = Store(db).voiceprints(agent_ids or None)
    missing = sorted(set(agent_ids or ()) - set(prints))
    if missing:
        raise ValueError(
            f"agent(s) not enrolled: {', '.join(missing)} (callwatch agents enroll AGENT_ID FILE)"
        )
    return prints


def _cmd_agents_enroll(args: argparse.Namespace) -> int:
    from assist.diarization import EnrolmentError, enrol_from
    from assist.store import Store, StoreError
    from audio.errors import AudioError
    from audio.reader import read_call

    try:
        audio = read_call(args.file, args.customer, args.agent_channel)
        enrolment = enrol_from(audio)
        store = Store(args.db)
        store.save_agent(
            args.agent_id, enrolment.voiceprint.tolist(), enrolment.speech_s, str(args.file)
        )
    except (AudioError, EnrolmentError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"enrolled {args.agent_id} from {args.file}: {enrolment.speech_s:.1f} s of speech "
        f"({enrolment.note}); stored in {store.url}"
    )
    return 0


def _cmd_agents_list(args: argparse.Namespace) -> int:
    from assist.store import Store, StoreError

    try:
        rows = Store(args.db).list_agents()
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print("no agents enrolled (callwatch agents enroll AGENT_ID FILE)")
    for r in rows:
        print(f"{r['agent_id']:<20} {r['speech_s']:6.1f} s  {r['enrolled_at']}  {r['source']}")
    return 0


def _cmd_agents_remove(args: argparse.Namespace) -> int:
    from assist.store import Store, StoreError

    try:
        removed = Store(args.db).delete_agent(args.agent_id)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not removed:
        print(f"error: agent {args.agent_id} is not enrolled", file=sys.stderr)
        return 1
    print(f"removed {args.agent_id}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from assist.server import ServerConfig, serve
    from assist.session import LiveConfig
    from assist.webhooks import WebhookConfigError, targets_from_args
    from audio.vad import VadConfig

    try:
        webhooks = targets_from_args(args.webhook, args.webhooks)
    except WebhookConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 2
    if args.emotion_model and not args.no_emotion:
        from models.emotion.ser import check_model_folder
        from models.locator import ModelNotFoundError

        try:
            check_model_folder(args.emotion_model)
        except ModelNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    logging.getLogger("callwatch").setLevel(logging.INFO)
    try:
        langs = serve_languages(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = ServerConfig(
        model=args.model,
        languages=list(langs.languages),
        language=langs.default,
        lang_models={k: v for k, v in langs.models.items() if k != "en"},
        threads=args.threads,
        workers=args.workers,
        rules=args.rules,
        db_url=args.db,
        store=not args.no_store,
        live=LiveConfig(partials=not args.no_partials, vad=VadConfig(aggressiveness=args.vad)),
        webhooks=webhooks,
        emotion=not args.no_emotion,
        emotion_model=args.emotion_model,
        diarize=not args.no_diarize,
        assist=not args.no_assist,
        playbooks=args.playbook,
        auth=not args.no_auth,
        audit_dirs=args.audit_dir,
        max_upload_mb=args.max_upload_mb,
        **ingest_security(args),
        **scale_out(args),
    )
    if args.max_upload_mb < 1:
        print("error: --max-upload-mb must be at least 1", file=sys.stderr)
        return 2
    if args.retention_days is not None and args.retention_days < 1:
        print("error: --retention-days must be at least 1", file=sys.stderr)
        return 2
    problem = ingest_security_problem(cfg)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not args.no_assist and playbooks_or_report(args.playbook) is None:
        return 2  # refuse a broken playbook before loading any model
    where = f"http://{args.host}:{args.port}/agent"
    print(
        f"agent panel: {where}"
        + (
            " (agents sign in with a token: callwatch tokens create --agent AGENT_ID)"
            if not args.no_auth
            else " (no sign-in: --no-auth)"
        ),
        file=sys.stderr,
    )
    if not args.no_auth:
        print(
            "every API route needs a token: callwatch tokens create --role "
            "admin|supervisor|qa|agent|ingest (see docs/security.md)",
            file=sys.stderr,
        )
    serve(cfg, host=args.host, port=args.port)
    return 0


def ingest_security(args: argparse.Namespace) -> dict[str, Any]:
    """The ingest credentials and limits for ServerConfig: secrets come from the
    environment only (a command line shows in `ps`)."""
    keys = os.environ.get("CALLWATCH_AUDIOHOOK_API_KEYS", "")
    return {
        "public_url": args.public_url or None,
        "twilio_auth_token": os.environ.get("CALLWATCH_TWILIO_AUTH_TOKEN") or None,
        "audiohook_api_keys": [k.strip() for k in keys.split(",") if k.strip()],
        "audiohook_client_secret": os.environ.get("CALLWATCH_AUDIOHOOK_CLIENT_SECRET") or None,
        "ingest_msgs_per_s": args.ingest_rate,
        "ingest_burst": args.ingest_burst,
    }


def ingest_security_problem(cfg: Any) -> str | None:
    """A configuration the server would refuse every stream with, said before starting."""
    from assist.ingest_auth import secret_key

    if cfg.audiohook_client_secret:
        try:
            secret_key(cfg.audiohook_client_secret)
        except ValueError as exc:
            return f"CALLWATCH_AUDIOHOOK_CLIENT_SECRET: {exc}"
        if not cfg.audiohook_api_keys:
            return (
                "CALLWATCH_AUDIOHOOK_CLIENT_SECRET is set but CALLWATCH_AUDIOHOOK_API_KEYS is not"
            )
    if cfg.public_url and not cfg.public_url.startswith(("ws://", "wss://", "http://", "https://")):
        return f"--public-url {cfg.public_url!r}: give the scheme too, e.g. wss://callwatch.example.com"
    if cfg.ingest_msgs_per_s < 0 or cfg.ingest_burst < 1:
        return "--ingest-rate must be 0 (no limit) or more and --ingest-burst at least 1"
    return None


def _cmd_webhooks_failed(args: argparse.Namespace) -> int:
    from assist.store import Store, StoreError

    try:
        letters = Store(args.db).dead_letters(args.limit)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not letters:
        print("no failed webhook deliveries", file=sys.stderr)
        return 0
    for d in letters:
        print(
            f"{d['id']:>5}  {d['created_at']}  {d['event_type']:<12}  call {d['call_id'] or '-'}  "
            f"{d['attempts']} attempt(s)  {d['url']}\n       {d['last_error'][:300]}"
        )
    return 0


def _cmd_webhooks_redeliver(args: argparse.Namespace) -> int:
    import asyncio

    from assist.store import Store, StoreError
    from assist.webhooks import SECRET_ENV, WebhookConfigError, load_targets, redeliver

    try:
        targets = load_targets(args.webhooks) if args.webhooks else []
    except WebhookConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return 2
    try:
        store = Store(args.db)
        results = asyncio.run(
            redeliver(store, targets, args.ids or None, os.environ.get(SECRET_ENV))
        )
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for id_, error in results:
        if error is None:
            print(f"{id_}: delivered")
        else:
            failed += 1
            print(f"{id_}: failed: {error}", file=sys.stderr)
    if not results:
        print("no failed webhook deliveries", file=sys.stderr)
    return 1 if failed else 0


def _print_event(ev: dict[str, Any], latency: float) -> None:
    t = ev.get("t", 0.0)
    lat = f"{latency:+.2f}s" if latency == latency else "  -  "
    kind = ev["type"]
    if kind == "transcript.final":
        line = f"{ev['speaker']:>8}: {ev['text']}"
    elif kind == "transcript.partial":
        line = f"{ev['speaker']:>8}~ {ev['text']}"
    elif kind == "alert":
        line = f"ALERT {ev['severity'].upper()} {ev['rule_id']}: {ev['message']}"
    elif kind == "silence":
        line = f"silence {ev['duration']:.1f} s"
    elif kind == "emotion":
        flag = ", ESCALATED" if ev["escalated"] else ""
        line = f"{ev['speaker']:>8}  ({ev['label']}, anger index {ev['anger_index']:.2f}{flag})"
    elif kind == "suggestion":
        what = ev.get("intent") or f"rule {ev.get('rule_id')}"
        line = f"SUGGEST {ev['title']} [{what}]"
        if ev.get("trigger"):
            line += f' <- "{ev["trigger"]["text"][:60]}"'
    elif kind == "scorecard":
        line = f"score {ev['score']:.0f}/100"
    else:
        line = kind
    print(f"[{ev['call_id'][:24]:<24} {t:7.2f}s lat {lat}] {line}", flush=True)


def _cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from websockets.exceptions import ConnectionClosed

    from assist.replay import replay

    show_partials = args.partials

    def on_event(ev: dict[str, Any], lat: float) -> None:
        if ev["type"] == "transcript.partial" and not show_partials:
            return
        _print_event(ev, lat)

    try:
        result = asyncio.run(
            replay(
                args.url.rstrip("/"),
                args.file,
                args.customer,
                args.protocol,
                args.speed,
                call_id=args.call_id,
                agent_id=args.agent_id,
                language=args.language,
                agent_channel=args.agent_channel,
                on_event=on_event,
                mixed=True if args.mixed else None,
                token=args.token,
                events_token=args.events_token,
                twilio_auth_token=args.twilio_auth_token,
                public_url=args.public_url,
                api_key=args.api_key,
                client_secret=args.client_secret,
            )
        )
    except ConnectionClosed as exc:  # refused (credentials, limits) or dropped
        why = f"{exc.rcvd.code} {exc.rcvd.reason}" if exc.rcvd else "no close frame"
        print(f"error: the server closed the stream: {why}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finals = [x for x in result.latency.get("transcript.final", []) if x == x]
    if finals:
        finals.sort()
        print(
            f"{len(finals)} finals, latency p50 {finals[len(finals) // 2]:.2f} s, "
            f"max {finals[-1]:.2f} s",
            file=sys.stderr,
        )
    return 0 if any(e["type"] == "call.ended" for e in result.events) else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from assist.demo import run_demo

    return run_demo(
        speed=args.speed,
        model=args.model,
        partials=args.partials,
        port=args.port,
        board=not args.no_board,
        board_port=args.board_port,
        rounds=args.rounds,
    )


def add_language_args(p: argparse.ArgumentParser, audit: bool) -> None:
    served = "the recordings may be in" if audit else "this server transcribes"
    p.add_argument(
        "--languages",
        metavar="LIST",
        default=os.environ.get("CALLWATCH_LANGUAGES"),
        help=f"languages {served}, comma-separated (e.g. en,zh; default: "
        + ("the --language given, or en,zh with --language auto)" if audit else "en)"),
    )
    p.add_argument(
        "--language",
        metavar="CODE",
        default=os.environ.get("CALLWATCH_LANGUAGE"),
        help=(
            "the recordings' language (en, zh ...) or 'auto' to identify it on the first "
            "utterances (default: en)"
            if audit
            else "language of calls whose start message names none, or 'auto' to identify "
            "it on the first utterance (default: the only served language, else auto)"
        ),
    )
    p.add_argument(
        "--lang-model",
        metavar="LANG=MODEL",
        action="append",
        default=[],
        help="model for a language other than English: base (default, bundled, "
        "multilingual) or a local CTranslate2 folder; --model is the English one",
    )


def _language_config(args: argparse.Namespace, languages: str) -> Any:
    from assist.language import LanguageConfig, language_of

    langs = [x for x in (language_of(p.strip()) for p in languages.split(",")) if x]
    models = list(args.lang_model)
    if "en" in langs:
        models.append(f"en={args.model}")
    return LanguageConfig.parse(langs, args.language, models)


def audit_languages(args: argparse.Namespace) -> Any:
    """Audit: one language (default en), or with ``--language auto`` detection among
    ``--languages`` (default en,zh)."""
    language = args.language or "en"
    languages = args.languages or ("en,zh" if language == "auto" else language)
    args.language = language
    return _language_config(args, languages)


def serve_languages(args: argparse.Namespace) -> Any:
    return _language_config(args, args.languages or "en")


def scale_out(args: argparse.Namespace) -> dict[str, Any]:
    """ServerConfig fields for several instances and retention, where given."""
    out: dict[str, Any] = {"retention_days": args.retention_days}
    if args.instance_id:
        out["instance_id"] = args.instance_id
    if args.bus:
        out["bus_url"] = args.bus
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="callwatch", description="Speech QA and agent assist for contact centers."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("audit", help="transcribe and score recorded calls")
    a.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="WAV/FLAC/MP3 recordings (stereo, mono, or the agent leg with --customer)",
    )
    a.add_argument(
        "--customer", metavar="FILE", help="the customer's leg when FILE is the agent's leg"
    )
    a.add_argument(
        "--agent-channel",
        choices=["left", "right"],
        default="left",
        help="stereo side that carries the agent (default left)",
    )
    a.add_argument(
        "--rules", metavar="DIR", help="rule pack folder or file (default: the built-in packs)"
    )
    _add_emotion_flags(a)
    _add_assist_flags(a)
    a.add_argument(
        "--diarize",
        choices=["embedding", "pyannote", "none"],
        default=os.environ.get("CALLWATCH_DIARIZE", "embedding"),
        help="how mono recordings are split into speakers (default embedding; "
        "pyannote needs --pyannote-dir)",
    )
    a.add_argument(
        "--pyannote-dir",
        metavar="DIR",
        default=os.environ.get("CALLWATCH_PYANNOTE_DIR"),
        help="local pyannote.audio pipeline folder (config.yaml + models)",
    )
    a.add_argument(
        "--agent",
        metavar="AGENT_ID",
        action="append",
        help="enrolled agent expected on these calls (repeatable; default: every enrolled agent)",
    )
    a.add_argument(
        "--format",
        choices=["table", "json", "csv", "html"],
        default="table",
        help="html: one printable report per call (the browser's Print gives a PDF)",
    )
    a.add_argument("--out", metavar="PATH", help="write the report here instead of stdout")
    a.add_argument("--events", action="store_true", help="include every event in JSON output")
    a.add_argument(
        "--no-transcript", action="store_true", help="table format: alerts and scorecard only"
    )
    a.add_argument(
        "--model",
        default=os.environ.get("CALLWATCH_MODEL", "tiny.en"),
        help="tiny.en (default), base, or a local CTranslate2 folder",
    )
    add_language_args(a, audit=True)
    a.add_argument(
        "--beam-size",
        type=int,
        default=1,
        help="beam of the English model (Mandarin decodes with beam 5: docs/benchmarks.md)",
    )
    a.add_argument("--threads", type=int, default=1, help="CPU threads for the model")
    a.add_argument(
        "--vad", type=int, choices=[0, 1, 2, 3], default=3, help="webrtcvad aggressiveness"
    )
    a.add_argument(
        "--db",
        metavar="URL",
        help="store URL (default sqlite in $CALLWATCH_HOME or ~/.local/share/callwatch)",
    )
    a.add_argument("--no-store", action="store_true", help="do not write results to the store")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=_cmd_audit)

    s = sub.add_parser("serve", help="run the live sidecar (WebSocket ingest + event API)")
    s.add_argument("--host", default=os.environ.get("CALLWATCH_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("CALLWATCH_PORT", "8080")))
    s.add_argument("--model", default=os.environ.get("CALLWATCH_MODEL", "tiny.en"))
    add_language_args(s, audit=False)
    s.add_argument("--threads", type=int, default=1, help="CPU threads per model call")
    s.add_argument(
        "--workers",
        type=int,
        default=2,
        help="ASR calls in parallel on the shared model (one per core)",
    )
    s.add_argument(
        "--rules",
        metavar="DIR",
        help="rule pack folder, edited live over /v1/rules (default: $CALLWATCH_HOME/rules, "
        "seeded with the built-in packs on first start)",
    )
    s.add_argument("--vad", type=int, choices=[0, 1, 2, 3], default=3)
    s.add_argument("--no-partials", action="store_true", help="finals only (saves CPU)")
    s.add_argument("--db", metavar="URL")
    s.add_argument("--no-store", action="store_true")
    s.add_argument(
        "--webhook",
        metavar="URL",
        action="append",
        default=[],
        help="POST alerts (warning and up) here, signed with $CALLWATCH_WEBHOOK_SECRET; repeatable",
    )
    s.add_argument(
        "--webhooks", metavar="FILE", help="YAML list of webhook targets (see docs/webhooks.md)"
    )
    _add_emotion_flags(s)
    _add_assist_flags(s)
    s.add_argument(
        "--no-auth",
        action="store_true",
        help="no tokens and open ingest: every caller is an admin (a trusted network only)",
    )
    s.add_argument(
        "--no-diarize",
        action="store_true",
        help='keep mono ("mixed") streams as one speaker instead of finding speakers live',
    )
    s.add_argument(
        "--audit-dir",
        metavar="DIR",
        action="append",
        default=[],
        help="recording folder the board may audit (repeatable; default "
        "$CALLWATCH_HOME/recordings); nothing outside these folders is read",
    )
    s.add_argument(
        "--instance-id",
        metavar="ID",
        help="this server among several sharing one store (default $CALLWATCH_INSTANCE_ID, "
        "else the host name); stable across restarts, unique among running instances",
    )
    s.add_argument(
        "--bus",
        metavar="URL",
        help="redis://HOST:6379/0 to share live events with other instances "
        "(default $CALLWATCH_BUS_URL; none: this process only)",
    )
    s.add_argument(
        "--retention-days",
        type=int,
        metavar="N",
        help="delete transcripts and uploaded recordings of calls older than N days, hourly "
        "(scores, alerts and the audit trail stay; default: keep everything)",
    )
    s.add_argument(
        "--max-upload-mb",
        type=int,
        default=200,
        help="largest recording the board may upload for an audit, per file (default 200)",
    )
    s.add_argument(
        "--public-url",
        metavar="URL",
        default=os.environ.get("CALLWATCH_PUBLIC_URL"),
        help="the base URL telephony platforms call (wss://host[:port][/prefix]) when a proxy "
        "is in front: Twilio signs it, AudioHook the host (default $CALLWATCH_PUBLIC_URL). "
        "Ingest secrets come from $CALLWATCH_TWILIO_AUTH_TOKEN, $CALLWATCH_AUDIOHOOK_API_KEYS "
        "(comma list) and $CALLWATCH_AUDIOHOOK_CLIENT_SECRET",
    )
    s.add_argument(
        "--ingest-rate",
        type=float,
        default=1500.0,
        metavar="MSGS_PER_S",
        help="messages per second one ingest stream may send (default 1500; 0: no limit)",
    )
    s.add_argument(
        "--ingest-burst",
        type=int,
        default=3000,
        help="messages an ingest stream may send at once above that rate (default 3000)",
    )
    s.set_defaults(func=_cmd_serve)

    p2 = sub.add_parser("replay", help="play a recording into a server as a live call")
    p2.add_argument("file", metavar="FILE")
    p2.add_argument("--customer", metavar="FILE")
    p2.add_argument("--protocol", choices=["twilio", "audiohook", "raw"], default="twilio")
    p2.add_argument("--url", default="ws://127.0.0.1:8080")
    p2.add_argument("--speed", type=float, default=1.0)
    p2.add_argument("--call-id")
    p2.add_argument("--agent-id", default="agent-1")
    p2.add_argument("--language")
    p2.add_argument("--agent-channel", choices=["left", "right"], default="left")
    p2.add_argument("--partials", action="store_true", help="also print partial transcripts")
    p2.add_argument(
        "--mixed",
        action="store_true",
        help="send one mono mix of both sides (raw protocol) so the server finds the speakers; "
        "mono files are always sent this way",
    )
    p2.add_argument(
        "--token",
        default=os.environ.get("CALLWATCH_TOKEN"),
        help="API token sent on the ingest stream (ingest or admin role) and, unless "
        "--events-token is given, on the event stream (default $CALLWATCH_TOKEN)",
    )
    p2.add_argument(
        "--events-token", help="token for following the call's events (a role that reads calls)"
    )
    p2.add_argument(
        "--twilio-auth-token",
        default=os.environ.get("CALLWATCH_TWILIO_AUTH_TOKEN"),
        help="sign the Twilio stream as Twilio does (default $CALLWATCH_TWILIO_AUTH_TOKEN)",
    )
    p2.add_argument(
        "--public-url",
        help="the URL the server knows itself by (its --public-url), for the signatures",
    )
    p2.add_argument(
        "--api-key",
        default=os.environ.get("CALLWATCH_AUDIOHOOK_API_KEY"),
        help="AudioHook X-API-KEY (default $CALLWATCH_AUDIOHOOK_API_KEY)",
    )
    p2.add_argument(
        "--client-secret",
        default=os.environ.get("CALLWATCH_AUDIOHOOK_CLIENT_SECRET"),
        help="AudioHook client secret (base64) to sign the request with "
        "(default $CALLWATCH_AUDIOHOOK_CLIENT_SECRET)",
    )
    p2.set_defaults(func=_cmd_replay)

    d = sub.add_parser("demo", help="start a server and replay the bundled demo calls into it")
    d.add_argument("--speed", type=float, default=1.0, help="replay speed (1.0 = real time)")
    d.add_argument("--model", default=os.environ.get("CALLWATCH_MODEL", "tiny.en"))
    d.add_argument("--partials", action="store_true", help="also print partial transcripts")
    d.add_argument("--port", type=int, help="server port (default: a free one)")
    d.add_argument(
        "--board-port", type=int, help="supervisor board port (default 8501, else a free one)"
    )
    d.add_argument("--no-board", action="store_true", help="no supervisor board")
    d.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="replay the calls this many times, then stop (default 0: until Ctrl-C)",
    )
    d.set_defaults(func=_cmd_demo)

    w = sub.add_parser("webhooks", help="webhook deliveries that failed (dead letters)")
    wsub = w.add_subparsers(dest="webhooks_command", required=True)
    wf = wsub.add_parser("failed", help="list events no receiver accepted")
    wf.add_argument("--limit", type=int, default=100, help="at most this many, oldest first")
    wf.add_argument("--db", metavar="URL")
    wf.set_defaults(func=_cmd_webhooks_failed)
    wr = wsub.add_parser("redeliver", help="send dead letters again; delete each one accepted")
    wr.add_argument("ids", nargs="*", type=int, metavar="ID", help="default: all of them")
    wr.add_argument(
        "--webhooks",
        metavar="FILE",
        help="targets file to take secrets and retry settings from "
        "(otherwise $CALLWATCH_WEBHOOK_SECRET)",
    )
    wr.add_argument("--db", metavar="URL")
    wr.set_defaults(func=_cmd_webhooks_redeliver)

    ag = sub.add_parser("agents", help="enrolled agent voiceprints (tell agent from customer)")
    agsub = ag.add_subparsers(dest="agents_command", required=True)
    ae = agsub.add_parser("enroll", help="store an agent's voiceprint from a recording of them")
    ae.add_argument("agent_id", metavar="AGENT_ID")
    ae.add_argument(
        "file",
        metavar="FILE",
        help="the agent speaking: a mono file of them, a mono call (their voice is the one "
        "with most speech), or a stereo call (--agent-channel)",
    )
    ae.add_argument("--customer", metavar="FILE", help="when FILE is the agent's own leg")
    ae.add_argument("--agent-channel", choices=["left", "right"], default="left")
    ae.add_argument("--db", metavar="URL")
    ae.set_defaults(func=_cmd_agents_enroll)
    al = agsub.add_parser("list", help="enrolled agents")
    al.add_argument("--db", metavar="URL")
    al.set_defaults(func=_cmd_agents_list)
    ar = agsub.add_parser("remove", help="forget an agent's voiceprint")
    ar.add_argument("agent_id", metavar="AGENT_ID")
    ar.add_argument("--db", metavar="URL")
    ar.set_defaults(func=_cmd_agents_remove)

    add_assist_commands(sub)
    add_board_commands(sub)
    add_trust_commands(sub)

    r = sub.add_parser("rules", help="work with QA rule packs")
    rsub = r.add_subparsers(dest="rules_command", required=True)
    rc = rsub.add_parser("check", help="validate rule packs")
    rc.add_argument("dir", metavar="DIR", help="folder of *.yaml packs, or one file")
    rc.set_defaults(func=_cmd_rules_check)
    rt = rsub.add_parser(
        "test", help="run rule unit tests: scripted calls and the alerts they should raise"
    )
    rt.add_argument("dir", metavar="DIR", help="folder of *.yaml packs, or one file")
    rt.add_argument(
        "--cases",
        metavar="CASES",
        action="append",
        required=True,
        help="cases file, or a folder of *.yaml cases files (repeatable); "
        "example: examples/rules/default_cases.yaml",
    )
    rt.add_argument("--format", choices=["table", "json"], default="table")
    rt.set_defaults(func=_cmd_rules_test)
    rx = rsub.add_parser(
        "explain", help="why a rule fired on a stored call, or why it did not (with evidence)"
    )
    rx.add_argument("rule_id", metavar="RULE_ID")
    rx.add_argument("--call", metavar="CALL_ID", required=True, help="a call in the store")
    rx.add_argument(
        "--rules", metavar="DIR", help="rule packs (default: the server's rules folder)"
    )
    rx.add_argument("--db", metavar="URL", help="store URL (default: the local store)")
    rx.add_argument("--format", choices=["table", "json"], default="table")
    rx.set_defaults(func=_cmd_rules_explain)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
