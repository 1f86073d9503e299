"""A call's language decides its model, rules and playbook: configuration, start metadata,
or identification on the first utterance. Real Whisper (tiny.en and the bundled multilingual
base) on real English and Mandarin speech; a real server for the mixed live calls."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assist.audit import AuditOptions, audit_file
from assist.language import (
    CallLanguage,
    LanguageConfig,
    LanguageModels,
    language_fields,
    packs_for,
)
from assist.replay import replay
from assist.server import App
from models.asr import Transcript, Word
from qa_rules.loader import BUILTIN_PACKS, parse_pack
from qa_rules.schema import RulePack
from qa_rules.text import is_cjk, to_simplified
from tests.conftest import DEMO
from tests.live_server import make_state, running_server
from tests.zh_call import Line, build_test_call

# The rule is written in traditional characters (工作人員); Whisper's output is normalised to
# simplified, and the matcher treats both scripts as one.
ZH_PACK = """
pack: zh_test
language: zh
rules:
  - id: zh_staff_phrase
    kind: phrase
    mode: forbidden
    speaker: agent
    phrases: [工作人員]
    severity: warning
    audience: supervisor
    message: "坐席说了「{matched}」"
    cooldown_s: 0
  - id: zh_please_wait
    kind: phrase
    mode: required
    speaker: agent
    phrases: [请稍等, 稍等一下, 稍等]
    severity: info
"""
ANY_PACK = """
pack: any_test
language: any
rules:
  - id: long_silence_any
    kind: silence
    min_s: 30
    severity: info
"""


def _zh_pack() -> RulePack:
    return parse_pack(ZH_PACK, "zh_test.yaml")


def _tr(lang: str, prob: float, text: str = "x") -> Transcript:
    return Transcript(text, (Word(text, 0.0, 0.5, 0.9),), 0.0, 0.5, lang, language_prob=prob)


# -- configuration, metadata, detection (no models) --------------------------------------


def test_language_config_defaults_and_errors() -> None:
    one = LanguageConfig.parse("en", None)
    assert (one.languages, one.default, one.model_for("en")) == (("en",), "en", "tiny.en")
    two = LanguageConfig.parse("en, zh-CN", None, ["zh=/models/whisper-small"])
    assert two.languages == ("en", "zh") and two.default == "auto" and two.detects
    assert two.model_for("zh") == "/models/whisper-small"
    assert LanguageConfig.parse("en,zh", "zh-Hans").default == "zh"
    with pytest.raises(ValueError, match="not among the served languages"):
        LanguageConfig.parse("en", "zh")
    with pytest.raises(ValueError, match="LANG=MODEL"):
        LanguageConfig.parse("en,zh", None, ["base"])
    with pytest.raises(ValueError, match="fr, which is not served"):
        LanguageConfig.parse("en", None, ["fr=base"])


def test_call_language_from_metadata_config_or_detection() -> None:
    cfg = LanguageConfig(("en", "zh"), "auto")
    assert (CallLanguage(cfg, "zh-CN").language, CallLanguage(cfg, "zh-CN").source) == (
        "zh",
        "metadata",
    )
    fixed = CallLanguage(LanguageConfig(("en", "zh"), "en"), None)
    assert (fixed.language, fixed.source) == ("en", "config")
    # a language the server does not serve: the default decides (here: detection)
    unserved = CallLanguage(cfg, "fr-FR")
    assert unserved.pending and unserved.source == "pending"

    sure = CallLanguage(cfg)
    assert sure.observe(_tr("zh", 0.93)) and sure.language == "zh" and sure.source == "detected"
    assert not sure.observe(_tr("en", 0.99)) and sure.language == "zh"  # decided once

    unsure = CallLanguage(cfg)
    assert not unsure.observe(_tr("en", 0.55))
    assert not unsure.observe(_tr("zh", 0.6))
    assert not unsure.observe(Transcript("", (), 0, 1, "en"))  # silence says nothing
    assert unsure.observe(_tr("zh", 0.62)) and unsure.language == "zh"  # best of three
    assert not CallLanguage(cfg).observe(_tr("fr", 0.99))  # not a served language


def test_packs_apply_by_language() -> None:
    en = RulePack(pack="en_p", language="en")
    zh = RulePack(pack="zh_p", language="zh-CN")
    anyp = RulePack(pack="any_p", language="any")
    packs = [en, zh, anyp]
    assert [p.pack for p in packs_for(packs, "en")] == ["en_p", "any_p"]
    assert [p.pack for p in packs_for(packs, "zh")] == ["zh_p", "any_p"]
    assert [p.pack for p in packs_for(packs, None)] == ["any_p"]


def test_report_language_is_the_decided_one() -> None:
    events: list[dict[str, Any]] = [
        {"type": "call.started", "language": None, "model": "base@x", "rule_packs": ["a@1"]},
        {"type": "transcript.final", "text": "你好"},
        {"type": "call.language", "language": "zh", "model": "base@x", "rule_packs": ["z@1"]},
    ]
    assert language_fields(events) == {"language": "zh", "model": "base@x", "rule_packs": ["z@1"]}


# -- real audio ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zh_call(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Line]]:
    out = tmp_path_factory.mktemp("zh") / "zh_call.wav"
    return out, build_test_call(out)


def _staff_line(lines: list[Line]) -> Line:
    (line,) = [x for x in lines if "工作人员" in x.text]
    return line


def _check_zh_report(report: dict[str, Any], lines: list[Line]) -> None:
    """Mandarin rules ran (and only they), the phrase fired on its utterance only."""
    assert report["language"] == "zh"
    rule_ids = {r["rule_id"] for r in report["scorecard"]["rules"]}
    assert {"zh_staff_phrase", "zh_please_wait"} <= rule_ids
    assert not rule_ids & {"recording_disclosure", "greeting", "forbidden_language"}
    text = "".join(t["text"] for t in report["transcript"])
    assert sum(map(is_cjk, text)) > 40 and to_simplified(text) == text
    staff = [a for a in report["alerts"] if a["rule_id"] == "zh_staff_phrase"]
    line = _staff_line(lines)
    assert len(staff) == 1, [(a["rule_id"], a["t"]) for a in report["alerts"]]
    assert line.t - 0.5 <= staff[0]["t"] <= line.t_end + 0.5
    assert "工作人员" in staff[0]["message"]
    wait = next(r for r in report["scorecard"]["rules"] if r["rule_id"] == "zh_please_wait")
    assert wait["status"] == "passed", wait


@pytest.mark.slow
def test_mandarin_audit_runs_mandarin_rules(  # type: ignore[no-untyped-def]
    asr, base_asr, packs, zh_call
) -> None:
    path, lines = zh_call
    all_packs = [*packs, _zh_pack(), parse_pack(ANY_PACK, "any.yaml")]
    models = LanguageModels(LanguageConfig(("en", "zh"), "auto"), given={"en": asr, "zh": base_asr})
    detected = audit_file(str(path), all_packs, models, options=AuditOptions())
    _check_zh_report(detected, lines)
    started = next(e for e in detected["events"] if e["type"] == "call.started")
    assert started["language"] is None and started["language_source"] == "pending"
    assert started["rule_packs"] == ["any_test@1"]  # only language-neutral rules until known
    (decided,) = [e for e in detected["events"] if e["type"] == "call.language"]
    assert decided["language"] == "zh" and decided["source"] == "detected"
    assert decided["confidence"] > 0.5 and decided["model"] == base_asr.model_id
    assert "zh_test@1" in detected["rule_packs"] and "any_test@1" in detected["rule_packs"]

    told = audit_file(str(path), all_packs, models, options=AuditOptions(language="zh"))
    _check_zh_report(told, lines)
    assert not [e for e in told["events"] if e["type"] == "call.language"]


@pytest.mark.slow
def test_english_audit_never_runs_mandarin_rules(  # type: ignore[no-untyped-def]
    asr, base_asr, packs
) -> None:
    models = LanguageModels(LanguageConfig(("en", "zh"), "auto"), given={"en": asr, "zh": base_asr})
    report = audit_file(str(DEMO / "breach_call.wav"), [*packs, _zh_pack()], models)
    assert report["language"] == "en"
    rule_ids = {r["rule_id"] for r in report["scorecard"]["rules"]}
    assert "forbidden_language" in rule_ids and not rule_ids & {"zh_staff_phrase"}
    assert any(a["rule_id"] == "forbidden_language" for a in report["alerts"])
    # after detection, English utterances go to the English model
    started = next(e for e in report["events"] if e["type"] == "call.started")
    assert started["model"] == base_asr.model_id
    assert report["model"] == asr.model_id


# -- mixed live calls on one server ---------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_state(  # type: ignore[no-untyped-def]
    asr, base_asr, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    # its own rules folder: the built-in packs (English and Mandarin) and the test pack
    rules = tmp_path_factory.mktemp("mixed-rules")
    for f in BUILTIN_PACKS.glob("*.yaml"):
        shutil.copy(f, rules / f.name)
    (rules / "zh_test.yaml").write_text(ZH_PACK, encoding="utf-8")
    st = make_state(
        asr,
        None,
        rules=str(rules),
        languages=["en", "zh"],
        language="auto",
        models={"zh": base_asr},
        assist=False,
    )
    yield st
    st.close()


@pytest.mark.slow
def test_mixed_english_and_mandarin_live_calls(mixed_state: App, zh_call) -> None:  # type: ignore[no-untyped-def]
    path, lines = zh_call
    with running_server(mixed_state) as url:

        async def both() -> list[Any]:
            return list(
                await asyncio.gather(
                    # no language named: identified on the first utterance
                    replay(url, str(DEMO / "breach_call.wav"), protocol="twilio", speed=6.0),
                    replay(url, str(path), protocol="raw", speed=3.0, agent_id="zh-1"),
                    # the start message names it: no identification
                    replay(
                        url,
                        str(path),
                        protocol="audiohook",
                        speed=3.0,
                        agent_id="zh-2",
                        language="zh",
                    ),
                )
            )

        en, zh_detected, zh_told = asyncio.run(both())

    def of(res: Any, type_: str) -> list[dict[str, Any]]:
        return [e for e in res.events if e["type"] == type_]

    # English: detected, English rules only, English model after detection
    (lang,) = of(en, "call.language")
    assert (
        lang["language"] == "en"
        and lang["model"] == mixed_state.languages.by_language["en"].model_id
    )
    (card,) = of(en, "scorecard")
    en_ids = {r["rule_id"] for r in card["rules"]}
    assert "forbidden_language" in en_ids and "zh_staff_phrase" not in en_ids
    assert any(a["rule_id"] == "forbidden_language" for a in of(en, "alert"))
    assert not any(is_cjk(c) for e in of(en, "transcript.final") for c in e["text"])

    for res, source in ((zh_detected, "detected"), (zh_told, "metadata")):
        (started,) = of(res, "call.started")
        decided = of(res, "call.language")
        if source == "metadata":
            assert started["language"] == "zh" and started["language_source"] == "metadata"
            assert not decided
        else:
            assert started["language"] is None and decided[0]["language"] == "zh"
        (card,) = of(res, "scorecard")
        ids = {r["rule_id"] for r in card["rules"]}
        assert "zh_staff_phrase" in ids and not ids & {"forbidden_language", "greeting"}
        staff = [a for a in of(res, "alert") if a["rule_id"] == "zh_staff_phrase"]
        line = _staff_line(lines)
        assert len(staff) == 1 and line.t - 0.5 <= staff[0]["t"] <= line.t_end + 0.5
        finals = of(res, "transcript.final")
        assert all(e["language"] == "zh" for e in finals)
        assert all(
            len(w["w"].rstrip("，。？！、")) == 1
            for e in finals
            for w in e["words"]
            if is_cjk(w["w"][0])
        )


@pytest.mark.slow
def test_served_languages_load_their_own_models() -> None:
    """What ``serve --languages en,zh`` loads: tiny.en for English, base for Mandarin and for
    identification (one instance), from the bundled weights."""
    models = LanguageModels(LanguageConfig.parse("en,zh", None))
    en, zh = models.by_language["en"], models.by_language["zh"]
    assert en.config.model == "tiny.en" and not en.multilingual
    assert zh.config.model == "base" and zh.multilingual and models.detector is zh
    assert len(models.models) == 2 and models.default_model is zh
    with pytest.raises(ValueError, match="English-only"):
        LanguageModels(LanguageConfig(("en", "zh"), "en", {"zh": "tiny.en"}))
