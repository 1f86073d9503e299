"""Diarization on real recordings: who spoke when, and which speaker is the agent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from assist.audit import AuditOptions, audit_file
from assist.diarization import EnrolmentError, enrol_from
from assist.store import Store
from audio.reader import CallAudio, Channel, read_call
from bench.der import read_rttm, score, to_annotation, whole
from models.diarize.base import Diarization, SpeakerTurn
from models.diarize.clustering import unit
from models.diarize.embedding import EmbeddingDiarizer
from models.diarize.encoder import mel_spectrogram, shared_encoder
from models.diarize.online import OnlineDiarizer
from models.diarize.pyannote_backend import PyannoteDiarizer, PyannoteUnavailableError
from models.diarize.roles import SpeakerProfile, decide_roles
from tests.conftest import REPO, shared

CALL = "stereo/aws_lca_auto_repairs_40"


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, Any]:
    folder = shared("diarization/pyannote_sample")
    samples = read_call(folder / "sample.wav").channels[0].samples
    return samples, read_rttm(folder / "sample.rttm")["sample"]


@pytest.fixture(scope="module")
def call_legs() -> tuple[np.ndarray, np.ndarray]:
    audio = read_call(shared(CALL) / "agent.wav", customer_path=shared(CALL) / "caller.wav")
    agent, customer = (c.samples for c in audio.channels)
    n = min(agent.size, customer.size)
    return agent[:n], customer[:n]


def _write(path: Path, samples: np.ndarray) -> str:
    sf.write(path, samples, 16000, subtype="PCM_16")
    return str(path)


def _truth_share(report: dict[str, Any], agent: np.ndarray, customer: np.ndarray) -> float:
    """Share of transcribed speech whose speaker matches the louder channel of the original."""
    right = total = 0.0
    for line in report["transcript"]:
        a, b = int(line["t"] * 16000), int(line["t_end"] * 16000)
        truth = "agent" if np.sum(agent[a:b] ** 2) > np.sum(customer[a:b] ** 2) else "customer"
        total += line["t_end"] - line["t"]
        right += (line["t_end"] - line["t"]) * (line["speaker"] == truth)
    return right / total


# -- the encoder ------------------------------------------------------------------------------
def test_mel_frames_follow_the_encoder_layout() -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    mel = mel_spectrogram(tone)
    assert mel.shape == (101, 40)  # centred 25 ms frames every 10 ms
    # 440 Hz lands in the low bands (mel bands are ~67 Hz wide below 1 kHz)
    assert int(np.argmax(mel[50])) in range(4, 9)


def test_same_voice_scores_higher_than_another_voice(sample: tuple[np.ndarray, Any]) -> None:
    samples, ref = sample
    enc = shared_encoder()
    voices: dict[str, list[np.ndarray]] = {}
    for seg, _, spk in ref.itertracks(yield_label=True):
        if seg.duration >= 1.6:
            piece = samples[int(seg.start * 16000) : int(seg.end * 16000)]
            voices.setdefault(spk, []).append(enc.embed_utterance(piece))
    a, b = sorted(voices)
    same = float(unit(np.mean(voices[a][::2], axis=0)) @ unit(np.mean(voices[a][1::2], axis=0)))
    other = float(unit(np.mean(voices[a], axis=0)) @ unit(np.mean(voices[b], axis=0)))
    assert same > other + 0.02, (same, other)  # 0.89 vs 0.84 measured: raw d-vectors are close


# -- offline embedding backend ----------------------------------------------------------------
def test_telephone_sample_two_speakers_der_bound(sample: tuple[np.ndarray, Any]) -> None:
    samples, ref = sample
    d = EmbeddingDiarizer().diarize(samples)
    parts = score(ref, to_annotation(d, "sample"), whole(samples))
    assert len(d.speakers) == 2
    assert parts.der < 0.15, parts.rates()  # 9.4 % measured (docs/benchmarks.md)
    assert parts.confusion / parts.total < 0.10
    assert d.confidence is not None and d.confidence > 0.5


def test_one_voice_is_one_speaker(call_legs: tuple[np.ndarray, np.ndarray]) -> None:
    for leg in call_legs:  # each side of a real phone call alone: one voice each
        d = EmbeddingDiarizer().diarize(leg[: 120 * 16000])
        speech = d.speech_seconds()
        assert len(speech) == 1, speech


def test_silence_gives_no_turns() -> None:
    d = EmbeddingDiarizer().diarize(np.zeros(16000 * 5, dtype=np.float32))
    assert d.turns == [] and d.speakers == []


# -- roles ------------------------------------------------------------------------------------
def _profile(label: str, first: float, texts: list[str], voice: np.ndarray | None = None) -> Any:
    return SpeakerProfile(label, first, 30.0, voice, texts)


def test_roles_from_agent_phrases_beat_speaking_order() -> None:
    decision = decide_roles(
        [
            _profile("S1", 0.5, ["hello?", "yes I'm calling about my bill"]),
            _profile("S2", 2.0, ["thank you for calling Acme, how can I help you today"]),
        ]
    )
    assert decision.roles == {"S2": "agent", "S1": "customer"}
    assert decision.evidence == "content"
    assert "thank you for calling" in decision.detail.lower()


def test_roles_fall_back_to_first_speaker_and_name_extra_voices() -> None:
    decision = decide_roles(
        [
            _profile("S1", 0.4, ["okay"]),
            _profile("S2", 3.0, ["right"]),
            SpeakerProfile("S3", 9.0, 4.0, None, ["hmm"]),
        ]
    )
    assert decision.evidence == "first_speaker"
    assert decision.roles == {"S1": "agent", "S2": "customer", "S3": "speaker_3"}


def test_voiceprint_outranks_content() -> None:
    rng = np.random.default_rng(0)
    agent_voice = unit(rng.normal(size=256))
    other = unit(rng.normal(size=256))
    decision = decide_roles(
        [
            _profile("S1", 0.0, ["thank you for calling"], other),
            _profile("S2", 1.0, ["hi"], agent_voice),
        ],
        {"a-7": agent_voice},
    )
    assert decision.evidence == "voiceprint" and decision.agent_id == "a-7"
    assert decision.roles["S2"] == "agent"


# -- audits of mono recordings ----------------------------------------------------------------
@pytest.mark.slow
def test_mono_mix_of_stereo_call_gets_roles_right(
    asr: Any, packs: Any, call_legs: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    agent, customer = call_legs
    mono = _write(tmp_path / "mono.wav", (agent + customer) / 2)
    report = audit_file(mono, packs, asr)
    d = report["diarization"]
    assert d["backend"] == "embedding" and len(d["speakers"]) == 2
    assert sorted(report["channels"]) == ["agent", "customer"]
    assert d["evidence"] in ("content", "first_speaker") and d["detail"]
    assert _truth_share(report, agent, customer) > 0.9
    # speaker rules now apply: the agent's greeting names the company
    first = min(report["transcript"], key=lambda x: x["t"])
    assert first["speaker"] == "agent" and "calling" in first["text"].lower()


@pytest.mark.slow
def test_enrolment_survives_restart_and_decides_roles(
    asr: Any, packs: Any, call_legs: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    agent, customer = call_legs
    half = 120 * 16000  # enrol on the first two minutes, audit the rest
    enrol_wav = _write(tmp_path / "agent_first_half.wav", agent[:half])
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    env = {**os.environ, "CALLWATCH_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> str:  # a new process each time, as after a restart
        return subprocess.run(
            [sys.executable, "-m", "assist.cli", *args, "--db", db],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        ).stdout

    assert "enrolled michelle" in cli("agents", "enroll", "michelle", enrol_wav)
    listed = cli("agents", "list")
    assert listed.startswith("michelle")

    # A new Store (as after a restart) reads the voiceprint back, and it decides the roles
    # of a stretch of the call it was not enrolled from.
    prints = {k: np.asarray(v, dtype=np.float32) for k, v in Store(db).voiceprints().items()}
    start = half + 16000 * 3
    rest_agent, rest_customer = agent[start:], customer[start:]
    mono = _write(tmp_path / "rest.wav", (rest_agent + rest_customer) / 2)
    report = audit_file(mono, packs, asr, options=AuditOptions(voiceprints=prints))
    assert report["diarization"]["evidence"] == "voiceprint"
    assert report["diarization"]["agent_id"] == "michelle"
    assert _truth_share(report, rest_agent, rest_customer) > 0.9


def test_enrolment_refuses_too_little_speech() -> None:
    one_second = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)
    with pytest.raises(EnrolmentError, match="at least"):
        enrol_from(CallAudio(("x.wav",), 16000, (Channel("agent", one_second),)))


def test_cli_agents_remove_unknown_agent_fails(tmp_path: Path) -> None:
    from assist.cli import main

    assert main(["agents", "remove", "nobody", "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 1


# -- live mono --------------------------------------------------------------------------------
def test_online_diarizer_follows_a_two_party_call(
    call_legs: tuple[np.ndarray, np.ndarray],
) -> None:
    from audio.vad import detect_segments

    agent, customer = call_legs
    mono = (agent + customer) / 2
    online = OnlineDiarizer()
    right = total = 0.0
    for seg in detect_segments(mono[: 150 * 16000]):
        a, b = int(seg.t * 16000), int(seg.t_end * 16000)
        role = online.assign(mono[a:b])
        truth = "agent" if np.sum(agent[a:b] ** 2) > np.sum(customer[a:b] ** 2) else "customer"
        total += seg.duration
        right += seg.duration * (role == truth)
    assert right / total > 0.85
    assert online.summary()["roles"]["S1"] == "agent"


def test_online_diarizer_uses_phrases_for_the_first_voice() -> None:
    online = OnlineDiarizer()
    tone = (0.1 * np.sin(np.arange(16000 * 2) / 7)).astype(np.float32)
    assert online.assign(tone, "hi, I'm calling about my bill") == "customer"


# -- pyannote backend -------------------------------------------------------------------------
def test_pyannote_folder_must_be_local(tmp_path: Path) -> None:
    with pytest.raises(PyannoteUnavailableError, match="does not exist"):
        PyannoteDiarizer(tmp_path / "nothing")
    (tmp_path / "config.yaml").write_text(
        "pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n  params:\n"
        "    segmentation: pyannote/segmentation-3.0\n    embedding: emb\n"
    )
    with pytest.raises(PyannoteUnavailableError, match="not a local path"):
        PyannoteDiarizer(tmp_path)


def test_pyannote_loading_reports_why_it_cannot_run(tmp_path: Path) -> None:
    for name in ("segmentation", "embedding"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "pytorch_model.bin").write_bytes(b"")
    (tmp_path / "config.yaml").write_text(
        "pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n  params:\n"
        "    segmentation: segmentation\n    embedding: embedding\n"
    )
    # pyannote.audio cannot import beside torch 2.13 CPU here (STACK.md); where it can, the
    # empty model files fail to load. Either way the error names the cause.
    with pytest.raises(PyannoteUnavailableError, match=r"cannot be imported|could not load"):
        PyannoteDiarizer(tmp_path)


def test_turn_helpers() -> None:
    d = Diarization(
        "embedding",
        [SpeakerTurn(0.0, 2.0, "S1"), SpeakerTurn(1.5, 4.0, "S2"), SpeakerTurn(4.0, 5.0, "S1")],
        0.8,
    )
    assert d.speakers == ["S1", "S2"]
    assert d.speech_seconds() == {"S1": 3.0, "S2": 2.5}


def test_cli_refuses_pyannote_without_a_usable_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from assist.cli import main

    wav = _write(tmp_path / "m.wav", np.zeros(16000, dtype=np.float32))
    assert main(["audit", wav, "--diarize", "pyannote", "--no-store", "-q"]) == 2
    assert "needs --pyannote-dir" in capsys.readouterr().err
    assert main(["audit", wav, "--diarize", "pyannote", "--pyannote-dir", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
