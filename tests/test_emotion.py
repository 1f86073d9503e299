"""Emotion: voice arousal on real acted speech, word valence, the anger index and its rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assist.audit import audit_file, run_pipeline
from audio.reader import CallAudio, Channel, read_call
from audio.vad import detect_segments
from models.emotion import EmotionAnalyzer, EmotionTracker, VoiceFeatures, text_valence
from qa_rules.engine import RuleEngine
from qa_rules.events import EmotionObserved
from qa_rules.loader import RuleError, parse_pack
from tests.conftest import DEMO, shared

RAVDESS = "emotion/ravdess_dev"


@pytest.fixture(scope="module")
def analyzer() -> EmotionAnalyzer:
    return EmotionAnalyzer()


def ravdess_rows() -> list[dict[str, str]]:
    with (shared(RAVDESS) / "labels.tsv").open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def speech(path: Path) -> np.ndarray:
    x = read_call(path).channels[0].samples
    segs = detect_segments(x)
    return x[int(segs[0].t * 16000) : int(segs[-1].t_end * 16000)]


# -- words ---------------------------------------------------------------------------------
def test_complaints_are_negative_with_their_cues() -> None:
    v = text_valence("This is ridiculous, I want to speak to a manager right now.")
    assert v.valence <= -0.5
    assert {"ridiculous", "speak to a manager"} <= set(v.cues)
    assert text_valence("Thank you so much, that was really helpful.").valence >= 0.5
    assert text_valence("I am calling about my bill from last month.").valence == 0.0


def test_mandarin_complaints_and_negated_praise() -> None:
    assert text_valence("我要投诉，你们的服务太差了", "zh").valence <= -0.8
    assert text_valence("我对这个结果不满意", "zh").valence < 0  # 不满意: not praise
    assert text_valence("好的，谢谢你", "zh").valence > 0
    assert text_valence("我想查一下我的账单", "zh").valence == 0.0


# -- voice on real speech ------------------------------------------------------------------
def test_angry_clips_sound_more_aroused_than_neutral_clips_of_the_same_speaker(
    analyzer: EmotionAnalyzer,
) -> None:
    rows = ravdess_rows()
    folder = shared(RAVDESS)
    above: list[bool] = []
    for actor in sorted({r["actor"] for r in rows}):
        mine = [r for r in rows if r["actor"] == actor]
        feats = {r["file"]: analyzer.voice.analyze(speech(folder / r["file"])) for r in mine}
        neutral = [r["file"] for r in mine if r["emotion"] == "neutral"]
        angry = [r["file"] for r in mine if r["emotion"] == "angry"]
        strong = [r["file"] for r in mine if r["emotion"] == "angry" and r["intensity"] == "strong"]

        def arousal(target: str, baseline: list[str], feats: dict[str, Any] = feats) -> float:
            tracker = EmotionTracker()
            for f in baseline:
                tracker.observe_voice("s", feats[f])
            return tracker.observe_voice("s", feats[target])[0]

        # Baseline: the speaker's neutral clips (the one being scored left out).
        a_neutral = [arousal(f, [g for g in neutral if g != f]) for f in neutral]
        a_angry = [arousal(f, neutral) for f in angry]
        a_strong = [arousal(f, neutral) for f in strong]
        assert min(a_strong) > max(a_neutral) + 1.0, (actor, a_strong, a_neutral)
        assert np.mean(a_angry) - np.mean(a_neutral) > 1.0, (actor, a_angry, a_neutral)
        # Acted "normal" anger is subtler: most of it, not all, sits above every neutral clip.
        above.extend(a > max(a_neutral) for a in a_angry)
    assert np.mean(above) >= 0.75, above


# -- the anger index -----------------------------------------------------------------------
def voice(loud: float, dur: float = 3.0) -> VoiceFeatures:
    """Synthetic features: only loudness and unvoiced flux drive arousal."""
    return VoiceFeatures(loud, loud, loud, 20.0, 3.0, 10.0, 3.0, dur)


def test_one_shout_is_not_an_escalation_but_sustained_anger_is_and_calm_clears_it() -> None:
    tr = EmotionTracker()
    t = 0.0
    rng = np.random.default_rng(1)

    def say(loud: float, dur: float = 3.0, text: str = "okay") -> Any:
        nonlocal t
        r = tr.observe("customer", t, t + dur, text, "en", voice(loud, dur))
        t += dur + 1.0
        return r

    calm = [say(float(rng.normal(0, 0.05))) for _ in range(8)]
    assert all(r.label != "angry" and not r.escalated for r in calm)
    shout = say(1.0, dur=1.5)
    assert shout.label == "angry" and not shout.escalated and shout.anger_index < 0.4
    angry = [say(1.0, dur=4.0) for _ in range(3)]
    assert angry[-1].escalated, [r.anger_index for r in angry]
    after = [say(float(rng.normal(0, 0.05))) for _ in range(12)]
    cleared_at = next(i for i, r in enumerate(after) if not r.escalated)
    # Calm speech brings it down within about a minute (3 s utterances + 1 s gaps).
    assert cleared_at * 4.0 <= 60.0
    assert after[-1].anger_index < 0.2


def test_a_lasting_change_of_level_does_not_keep_a_speaker_escalated() -> None:
    tr = EmotionTracker()
    t = 0.0
    readings = []
    for loud, n in ((0.0, 6), (1.5, 4), (0.6, 30)):  # calm, angry, then calm but louder line
        for _ in range(n):
            readings.append(tr.observe("customer", t, t + 3.0, "okay", "en", voice(loud)))
            t += 4.0
    assert readings[9].escalated
    assert not readings[-1].escalated and readings[-1].anger_index < 0.35


def test_words_alone_can_make_a_caller_angry_before_the_voice_baseline_exists() -> None:
    tr = EmotionTracker()
    first = tr.observe(
        "customer", 0.0, 5.0, "This is ridiculous, I am really angry, nobody called me back."
    )
    assert first.label == "angry" and first.baseline_n == 0
    second = tr.observe("customer", 6.0, 8.0, "I would like to pay my bill.")
    assert second.label == "neutral"
    assert tr.observe("agent", 9.0, 11.0, "Thanks, that's great.").label == "positive"


# -- emotion rules -------------------------------------------------------------------------
PACK = """
pack: emo
rules:
  - id: caller_angry
    kind: emotion
    speaker: customer
    index_above: 0.6
    clear_below: 0.35
    notify_clear: true
    severity: critical
    message: "Angry caller ({index:.2f})"
  - id: agent_tense
    kind: emotion
    speaker: agent
    labels: [angry, frustrated]
    sustained_utterances: 3
    cooldown_s: 0
"""


def obs(speaker: str, t: float, label: str = "neutral", index: float = 0.0) -> EmotionObserved:
    return EmotionObserved(speaker, t, t + 2.0, label, 0.8, index)


def test_index_rule_fires_once_then_clears_then_can_fire_again() -> None:
    engine = RuleEngine([parse_pack(PACK, "emo.yaml")])
    # 15 s apart; cooldown 120 s: the rise at i=9 (105 s after the first raise) is held
    # back by the cooldown, the one at i=13 (165 s after) fires.
    seq = [0.2, 0.5, 0.65, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2, 0.7, 0.3, 0.2, 0.2, 0.7]
    fired = []
    for i, idx in enumerate(seq):
        for a in engine.feed(obs("customer", 15.0 * i, "angry", idx)):
            fired.append((i, a.evidence["state"], a.severity, a.message))
    assert fired == [
        (2, "raised", "critical", "Angry caller (0.65)"),
        (7, "cleared", "critical", "Cleared: customer sounds calmer (anger index 0.30)"),
        (13, "raised", "critical", "Angry caller (0.70)"),
    ]
    assert engine.feed(obs("agent", 400.0, "angry", 0.9)) == []  # wrong speaker


def test_speaker_any_keeps_each_speaker_apart() -> None:
    pack = PACK.replace("speaker: customer", "speaker: any").replace(
        "speaker: agent", "speaker: any"
    )
    engine = RuleEngine([parse_pack(pack, "emo.yaml")])
    out = []
    for i, (spk, lab, idx) in enumerate(
        [
            ("agent", "angry", 0.7),
            ("customer", "angry", 0.1),
            ("agent", "angry", 0.75),
            ("customer", "angry", 0.1),
            ("customer", "neutral", 0.1),
            ("agent", "angry", 0.8),
        ]
    ):
        out += [
            (i, a.rule_id, a.speaker, a.evidence["state"])
            for a in engine.feed(obs(spk, 10.0 * i, lab, idx))
        ]
    # The agent's raise is not "cleared" by the calm customer; the agent's label run (3 in
    # a row, its own utterances only) fires at its third angry utterance.
    assert out == [(0, "caller_angry", "agent", "raised"), (5, "agent_tense", "agent", "raised")]


def test_label_rule_needs_consecutive_utterances() -> None:
    engine = RuleEngine([parse_pack(PACK, "emo.yaml")])
    labels = ["angry", "frustrated", "neutral", "angry", "angry", "frustrated", "angry"]
    fired = [
        (i, a.rule_id)
        for i, lab in enumerate(labels)
        for a in engine.feed(obs("agent", 5.0 * i, lab))
    ]
    assert fired == [(5, "agent_tense")]


def test_broken_emotion_rules_are_refused_with_their_field() -> None:
    bad = PACK.replace("index_above: 0.6", "index_above: 0.6\n    labels: [angry]")
    with pytest.raises(RuleError) as err:
        parse_pack(bad, "emo.yaml")
    assert "give labels or index_above" in str(err.value)
    with pytest.raises(RuleError, match="clear_below must be below index_above"):
        parse_pack(PACK.replace("clear_below: 0.35", "clear_below: 0.7"), "emo.yaml")
    with pytest.raises(RuleError, match="labels"):
        parse_pack(PACK.replace("[angry, frustrated]", "[furious]"), "emo.yaml")


# -- whole calls ---------------------------------------------------------------------------
@pytest.mark.slow
def test_constructed_call_calm_then_angry_then_calm(asr, packs, analyzer) -> None:  # type: ignore[no-untyped-def]
    """A RAVDESS speaker as the caller: calm clips, then angry ones, then calm again."""
    rows = [r for r in ravdess_rows() if r["actor"] == "1"]
    folder = shared(RAVDESS)
    calm = [r["file"] for r in rows if r["emotion"] == "neutral"] + [
        r["file"] for r in rows if r["emotion"] == "sad" and r["intensity"] == "normal"
    ]
    angry = [r["file"] for r in rows if r["emotion"] == "angry" and r["intensity"] == "strong"]
    gap = np.zeros(int(1.2 * 16000), dtype=np.float32)
    parts: list[np.ndarray] = []
    spans: dict[str, list[float]] = {}
    t = 0.0
    for section, files in (("calm1", calm * 2), ("angry", angry * 3), ("calm2", calm * 2)):
        start = t
        for f in files:
            x = speech(folder / f)
            parts += [x, gap]
            t += (x.size + gap.size) / 16000
        spans[section] = [start, t]
    customer = np.concatenate(parts)
    audio = CallAudio(
        ("constructed",),
        16000,
        (Channel("agent", np.zeros_like(customer)), Channel("customer", customer)),
    )
    pipe = run_pipeline(audio, "constructed", packs, asr, emotion=analyzer)
    got = [a for a in pipe.alerts if a["rule_id"] == "caller_angry"]
    states = [a["evidence"]["state"] for a in got]
    assert states == ["raised", "cleared"], [(a["t"], a["message"]) for a in got]
    raised, cleared = got
    assert spans["angry"][0] < raised["t"] <= spans["angry"][1]
    assert spans["calm2"][0] < cleared["t"] <= spans["calm2"][1]
    (prompt,) = [a for a in pipe.alerts if a["rule_id"] == "deescalate"]
    assert prompt["audience"] == ["agent"] and prompt["t"] == raised["t"]
    labels = [(e["t"], e["label"]) for e in pipe.emotions if e["speaker"] == "customer"]
    calm_labels = [
        lab
        for tt, lab in labels
        if tt < spans["calm1"][1] - 0.5 or tt > spans["calm2"][0] + 0.5  # VAD pads starts
    ]
    assert len(calm_labels) >= 20 and "angry" not in calm_labels, labels
    angry_labels = [lab for tt, lab in labels if spans["angry"][0] < tt + 0.5 < spans["angry"][1]]
    assert angry_labels == ["angry"] * 6, labels


@pytest.mark.slow
def test_demo_calls_no_anger_on_the_calm_call_one_escalation_on_the_complaint(
    asr, packs, analyzer
) -> None:  # type: ignore[no-untyped-def]
    clean = audit_file(str(DEMO / "clean_call.wav"), packs, asr, emotion=analyzer)
    assert not [a for a in clean["alerts"] if a["rule_id"] in ("caller_angry", "deescalate")]
    assert clean["emotion"]["customer"]["escalations"] == 0
    assert "angry" not in clean["emotion"]["customer"]["labels"]
    cancel = audit_file(str(DEMO / "cancel_call.wav"), packs, asr, emotion=analyzer)
    raised = [a for a in cancel["alerts"] if a["rule_id"] == "caller_angry"]
    assert len(raised) == 1
    marks = json.loads((DEMO / "cancel_call.timeline.json").read_text())["marks"]
    complaint = marks["complaint"]
    assert complaint <= raised[0]["t"] <= complaint + 12.0
    assert "ridiculous" in " ".join(
        c for e in cancel["events"] if e["type"] == "emotion" for c in e["cues"]
    )


# -- a trained speech-emotion model from a local folder -------------------------------------
def save_tiny_ser(folder: Path, labels: list[str]) -> Path:
    """A small randomly initialised wav2vec2 classifier, saved the way a real one ships."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_feat_extract_layers=2,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    transformers.Wav2Vec2ForSequenceClassification(cfg).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


def test_trained_model_loads_from_a_local_folder_and_drives_the_reading(tmp_path: Path) -> None:
    from models.emotion.ser import SerModel

    folder = save_tiny_ser(tmp_path / "ser", ["neu", "hap", "ang", "sad"])
    model = SerModel(folder)
    assert model.anger_ids == [2] and model.name == "ser:ser"
    agent = read_call(DEMO / "clean_call.wav").channels[0].samples
    clip = agent[16000 : 4 * 16000]  # the agent's greeting
    probs = model.probabilities(clip)
    assert set(probs) == {"neu", "hap", "ang", "sad"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert model.angry_probability(clip) == pytest.approx(probs["ang"])

    analyzer = EmotionAnalyzer(folder)
    m = analyzer.measure(clip)
    assert m.backend == "ser:ser" and m.features is not None
    assert m.angry_probability == pytest.approx(probs["ang"], abs=1e-6)
    tr = EmotionTracker()
    hot = tr.observe("customer", 0, 3, "okay", "en", m.features, 0.97, m.backend)
    assert hot.label == "angry" and hot.backend == "ser:ser"
    cold = tr.observe("customer", 4, 7, "okay", "en", m.features, 0.02, m.backend)
    assert cold.label == "neutral"
    # A fragment gets no voice reading, whatever the model says about it.
    short = analyzer.measure(clip[: int(0.7 * 16000)])
    frag = tr.observe("customer", 8, 8.7, "okay", "en", short.features, 0.99, short.backend)
    assert frag.label == "neutral"


def test_trained_model_errors_say_what_is_wrong(tmp_path: Path) -> None:
    from models.emotion.ser import SerModel
    from models.locator import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no speech-emotion model at"):
        SerModel(tmp_path / "missing")
    folder = save_tiny_ser(tmp_path / "nolabel", ["calm", "happy"])
    with pytest.raises(ModelNotFoundError, match="no anger class"):
        SerModel(folder)


def test_cli_refuses_a_missing_emotion_model_before_doing_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from assist.cli import main

    missing = str(tmp_path / "no-model")
    assert main(["serve", "--emotion-model", missing, "--port", "1"]) == 2
    assert "no speech-emotion model at" in capsys.readouterr().err
    assert main(["audit", str(DEMO / "clean_call.wav"), "--emotion-model", missing, "-q"]) == 2
    assert "no speech-emotion model at" in capsys.readouterr().err
