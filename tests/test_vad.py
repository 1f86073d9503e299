import numpy as np
import pytest

from audio import SAMPLE_RATE
from audio.reader import read_call
from audio.vad import Segment, VadConfig, VadSegmenter, detect_segments
from bench.vad import score_clip
from tests.conftest import DEMO, shared


def test_silence_and_noise_give_no_segments() -> None:
    rng = np.random.default_rng(0)
    assert detect_segments(np.zeros(5 * SAMPLE_RATE, np.float32)) == []
    noise = (rng.standard_normal(5 * SAMPLE_RATE) * 0.001).astype(np.float32)
    assert detect_segments(noise) == []


def test_demo_turns_are_found_where_the_script_put_them() -> None:
    import json

    timeline = json.loads((DEMO / "clean_call.timeline.json").read_text())
    call = read_call(DEMO / "clean_call.wav")
    segs = detect_segments(call.channels[0].samples)
    agent_turns = [t for t in timeline["turns"] if t["speaker"] == "agent"]
    for turn in agent_turns:
        # every scripted agent turn overlaps a detected segment on the agent channel
        assert any(s.t < turn["t_end"] and s.t_end > turn["t"] for s in segs), turn
    # and no segment sits where the agent was silent
    for s in segs:
        assert any(s.t < t["t_end"] + 0.3 and s.t_end > t["t"] - 0.3 for t in agent_turns), s


def test_streaming_in_20ms_frames_equals_whole_channel() -> None:
    samples = read_call(DEMO / "breach_call.wav").channels[1].samples
    whole = detect_segments(samples)
    seg = VadSegmenter()
    streamed: list[Segment] = []
    for i in range(0, samples.size, 320):
        streamed += seg.push(samples[i : i + 320])
    streamed += seg.flush()
    assert streamed == whole and len(whole) > 3


def test_long_speech_is_cut_below_the_asr_window() -> None:
    t = np.arange(40 * SAMPLE_RATE) / SAMPLE_RATE
    buzz = (0.3 * np.sign(np.sin(2 * np.pi * 150 * t)) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    segs = detect_segments(buzz, VadConfig(max_segment_s=20))
    assert segs and max(s.duration for s in segs) <= 20.2


def test_bad_aggressiveness() -> None:
    with pytest.raises(ValueError, match="aggressiveness must be 0-3"):
        VadConfig(aggressiveness=5)


def test_frame_f1_on_labelled_clips() -> None:
    """webrtcvad against manual speech labels (ten_vad_dev), a bound well under the bench."""
    folder = shared("vad/ten_vad_dev")
    totals = np.zeros(3)
    for wav in sorted(folder.glob("*.wav"))[:5]:
        totals += score_clip(wav, wav.with_suffix(".scv"), VadConfig())
    tp, fp, fn = totals
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert f1 > 0.80, f1
