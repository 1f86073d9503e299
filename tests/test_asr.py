"""Real faster-whisper (bundled tiny.en) on real recordings from ../shared/data."""

import itertools

import numpy as np
import pytest

from audio import SAMPLE_RATE
from audio.reader import read_call
from audio.vad import detect_segments
from bench.metrics import corpus_wer
from models.asr import WhisperAsr
from models.locator import ModelNotFoundError, locate
from tests.conftest import shared

pytestmark = pytest.mark.slow


def transcribe_channel(asr: WhisperAsr, samples: np.ndarray) -> str:
    clips = [
        (samples[int(s.t * SAMPLE_RATE) : int(s.t_end * SAMPLE_RATE)], s.t)
        for s in detect_segments(samples)
    ]
    return " ".join(t.text for t in asr.transcribe_batch(clips))


def test_jfk_words(asr: WhisperAsr) -> None:
    folder = shared("asr/jfk")
    call = read_call(folder / "jfk.flac")
    assert [c.role for c in call.channels] == ["mixed"]  # dual-mono file
    hyp = transcribe_channel(asr, call.channels[0].samples)
    ref = (folder / "jfk.ref.txt").read_text()
    assert corpus_wer([(ref, hyp)]) <= 0.15, hyp
    assert "country" in hyp.lower()


def test_both_channels_of_stereo_recording(asr: WhisperAsr) -> None:
    folder = shared("stereo/fw_stereo_diarization")
    call = read_call(folder / "stereo_diarization.wav")
    left = transcribe_channel(asr, call.channels[0].samples)
    right = transcribe_channel(asr, call.channels[1].samples)
    assert corpus_wer([((folder / "left.ref.txt").read_text(), left)]) <= 0.10, left
    assert corpus_wer([((folder / "right.ref.txt").read_text(), right)]) <= 0.10, right


def test_word_times_are_inside_the_clip_and_ordered(asr: WhisperAsr) -> None:
    call = read_call(shared("asr/jfk") / "jfk.flac")
    clip = call.channels[0].samples[: 4 * SAMPLE_RATE]
    tr = asr.transcribe(clip, offset=100.0)
    assert tr.words and tr.words[0].w.lower().startswith("and")
    times = [(w.t, w.t_end) for w in tr.words]
    assert all(100.0 <= t <= te <= 104.0 for t, te in times)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(times))


def test_batching_does_not_change_words(asr: WhisperAsr) -> None:
    folder = shared("asr/osr_us_000_0034_8k")
    samples = read_call(folder / "OSR_us_000_0034_8k.wav").channels[0].samples
    clips = [
        (samples[int(s.t * SAMPLE_RATE) : int(s.t_end * SAMPLE_RATE)], s.t)
        for s in detect_segments(samples)
    ]
    one_by_one = [asr.transcribe(a, o).text for a, o in clips]
    batched = [t.text for t in asr.transcribe_batch(clips)]
    assert one_by_one == batched
    ref = (folder / "OSR_us_000_0034_8k.ref.txt").read_text()
    assert corpus_wer([(ref, " ".join(batched))]) <= 0.15


def test_silence_gives_no_words(asr: WhisperAsr) -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(3 * SAMPLE_RATE) * 0.002).astype(np.float32)
    assert asr.transcribe(noise).empty


def test_locator_never_guesses() -> None:
    assert (locate("tiny.en") / "model.bin").is_file()
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        locate("large-v3")
