from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio import SAMPLE_RATE
from audio.errors import AudioError
from audio.reader import read_call
from tests.conftest import DEMO


def _tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_demo_call_is_ulaw_stereo_8k_split_into_agent_and_customer() -> None:
    info = sf.info(str(DEMO / "clean_call.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "ULAW")
    call = read_call(DEMO / "clean_call.wav")
    assert [c.role for c in call.channels] == ["agent", "customer"]
    assert call.source_rate == 8000
    assert abs(call.duration - info.duration) < 0.01
    assert all(c.samples.dtype == np.float32 for c in call.channels)


def test_agent_channel_right_swaps_roles() -> None:
    left = read_call(DEMO / "clean_call.wav", agent_channel="left")
    right = read_call(DEMO / "clean_call.wav", agent_channel="right")
    assert np.array_equal(left.channels[0].samples, right.channels[1].samples)


def test_two_files_and_resampling(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", _tone(2.0, 8000), 8000, subtype="ALAW")
    sf.write(tmp_path / "c.wav", _tone(2.0, 8000, 300), 8000, subtype="PCM_16")
    call = read_call(tmp_path / "a.wav", tmp_path / "c.wav")
    assert [c.role for c in call.channels] == ["agent", "customer"]
    assert call.channels[0].samples.size == 2 * SAMPLE_RATE


@pytest.mark.parametrize("fmt", ["FLAC", "MP3"])
def test_flac_and_mp3_read(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, _tone(1.5, 44100), 44100, format=fmt)
    call = read_call(path)
    assert call.channels[0].role == "mixed"
    assert abs(call.duration - 1.5) < 0.1


def test_dual_mono_stereo_is_treated_as_mono(tmp_path: Path) -> None:
    x = _tone(1.0, 16000)
    sf.write(tmp_path / "d.wav", np.stack([x, x], axis=1), 16000)
    assert [c.role for c in read_call(tmp_path / "d.wav").channels] == ["mixed"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_text("hello, I am not audio\n" * 20), "not a readable audio file"),
        (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "), "not a readable audio file"),
        (lambda p: sf.write(p, _tone(1.0, 4000), 4000), "unsupported sample rate 4000"),
        (lambda p: sf.write(p, _tone(0.02, 16000), 16000), "need at least 0.1 s"),
        (lambda p: sf.write(p, np.zeros((16000, 3), np.float32), 16000), "3 channels"),
    ],
    ids=["empty", "text", "truncated", "rate", "too-short", "channels"],
)
def test_bad_inputs_give_clear_errors(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as err:
        read_call(path)
    assert str(path) in str(err.value)


def test_missing_file_and_mismatched_legs(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        read_call(tmp_path / "nope.wav")
    sf.write(tmp_path / "a.wav", _tone(1.0, 8000), 8000)
    sf.write(tmp_path / "c.wav", _tone(1.0, 16000), 16000)
    with pytest.raises(AudioError, match="sample rates differ"):
        read_call(tmp_path / "a.wav", tmp_path / "c.wav")
