"""Which language a call is in, which model transcribes it, which rules and playbook apply.

A server (or an audit) serves a set of languages, each with its own Whisper model: English on
the small English-only ``tiny.en``, Mandarin (and any other language) on the bundled
multilingual ``base``. A call's language comes, in this order, from

1. the stream's start metadata (Twilio ``customParameters.language``, AudioHook
   ``language``, the raw start message) when the server serves that language;
2. the configured default language;
3. or, when the default is ``auto``, language identification: the call's first utterances
   go to the multilingual model with no language, which detects it among the served ones.
   The first utterance whose detection is confident (or the best after a few) decides.

Rule packs carry a ``language:`` (``en``, ``zh`` ...; ``any`` for every call); a call runs the
packs of its language and the ``any`` ones. Until detection decides, only ``any`` packs run;
when it decides, the call's rules are reloaded (the engine replays what it saw, which is
little: detection decides on the first utterance).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from models.asr import AsrConfig, Transcript, WhisperAsr
from qa_rules.schema import RulePack, packs_for

if TYPE_CHECKING:
    from assist.pipeline import CallPipeline
    from assist.suggest import AssistLibrary

log = logging.getLogger(__name__)

AUTO = "auto"
DEFAULT_MODELS = {"en": "tiny.en"}  # every other language: the multilingual model
MULTILINGUAL = "base"
LID_MIN_PROB = 0.7  # detection this sure decides at once
LID_MAX_UTTERANCES = 3  # else the most probable language over this many utterances


def language_of(code: str | None) -> str | None:
    """'zh-CN' / 'zh_Hans' / 'ZH' -> 'zh'; None stays None."""
    if not code:
        return None
    return code.replace("_", "-").split("-")[0].lower()


@dataclass(frozen=True)
class LanguageConfig:
    """The languages served, the model of each, and the default for calls that name none."""

    languages: tuple[str, ...] = ("en",)
    default: str = "en"  # one of ``languages``, or "auto" (language identification)
    models: dict[str, str] = field(default_factory=dict)  # language -> model (overrides)

    def __post_init__(self) -> None:
        if not self.languages:
            raise ValueError("serve at least one language (e.g. --languages en)")
        bad = [x for x in self.languages if language_of(x) != x or not x.isalpha()]
        if bad:
            raise ValueError(f"languages are two- or three-letter codes such as en, zh: {bad}")
        if self.default != AUTO and self.default not in self.languages:
            raise ValueError(
                f"default language {self.default!r} is not among the served languages "
                f"{', '.join(self.languages)} (or use 'auto')"
            )
        extra = sorted(set(self.models) - set(self.languages))
        if extra:
            raise ValueError(f"a model is set for {', '.join(extra)}, which is not served")

    @classmethod
    def parse(
        cls, languages: str | Sequence[str], default: str | None, models: Iterable[str] = ()
    ) -> LanguageConfig:
        """From command-line text: ``"en,zh"``, ``"auto"``, ``["zh=/models/whisper-small"]``."""
        if isinstance(languages, str):
            langs = tuple(x for x in (language_of(p.strip()) for p in languages.split(",")) if x)
        else:
            langs = tuple(x for x in (language_of(p) for p in languages) if x)
        chosen: dict[str, str] = {}
        for item in models:
            lang, sep, model = item.partition("=")
            if not sep or not model.strip():
                raise ValueError(f"--lang-model takes LANG=MODEL (e.g. zh=base), got {item!r}")
            chosen[language_of(lang.strip()) or ""] = model.strip()
        if default is None:
            default = langs[0] if len(langs) == 1 else AUTO
        dflt = default if default == AUTO else (language_of(default) or "")
        return cls(langs, dflt, chosen)

    def model_for(self, language: str) -> str:
        return self.models.get(language) or DEFAULT_MODELS.get(language, MULTILINGUAL)

    @property
    def detects(self) -> bool:
        return self.default == AUTO

    def detector_model(self) -> str:
        """The model that identifies the language: a served multilingual one, else base."""
        for lang in self.languages:
            name = self.model_for(lang)
            if name not in ("tiny.en",) and not name.endswith(".en"):
                return name
        return MULTILINGUAL


class LanguageModels:
    """One loaded model per distinct model name; each served language maps to one.

    ``given`` (tests, embedding) supplies already loaded models by language; the rest are
    loaded here. Two languages on the same model share one instance.
    """

    def __init__(
        self,
        config: LanguageConfig,
        threads: int = 1,
        workers: int = 1,
        given: dict[str, WhisperAsr] | None = None,
        beam_size: int = 1,
    ) -> None:
        self.config = config
        self._beam_size = beam_size
        loaded: dict[str, WhisperAsr] = {}
        for asr in (given or {}).values():
            loaded.setdefault(asr.config.model, asr)
        self.by_language: dict[str, WhisperAsr] = {}
        for lang in config.languages:
            if given and lang in given:
                self.by_language[lang] = given[lang]
                continue
            name = config.model_for(lang)
            if name not in loaded:
                loaded[name] = self._load(name, None, threads, workers)
            self.by_language[lang] = loaded[name]
        self.detector: WhisperAsr | None = None
        if config.detects:
            multi = [a for a in self.by_language.values() if a.multilingual]
            if multi:
                self.detector = multi[0]
            else:
                name = config.detector_model()
                self.detector = loaded.get(name) or self._load(name, None, threads, workers)
            if not self.detector.multilingual:
                raise ValueError(
                    f"language identification needs a multilingual model, not "
                    f"{self.detector.config.model}"
                )
        for lang, asr in self.by_language.items():
            if not asr.multilingual and lang != "en":
                raise ValueError(
                    f"model {asr.config.model} is English-only and cannot transcribe {lang!r}; "
                    f"use a multilingual model (e.g. --lang-model {lang}=base)"
                )

    @classmethod
    def single(cls, asr: WhisperAsr) -> LanguageModels:
        """One model for everything: its configured language, or (a multilingual model
        with no language) detection among its ``detect_languages`` (default en, zh)."""
        if asr.config.language is not None or not asr.multilingual:
            lang = asr.config.language or "en"
            return cls(LanguageConfig((lang,), lang), given={lang: asr})
        langs = asr.config.detect_languages or ("en", "zh")
        return cls(LanguageConfig(langs, AUTO), given=dict.fromkeys(langs, asr))

    def _load(self, name: str, language: str | None, threads: int, workers: int) -> WhisperAsr:
        return WhisperAsr(
            AsrConfig(
                model=name,
                language=language,
                threads=threads,
                workers=workers,
                beam_size=self._beam_size,
                detect_languages=self.config.languages,
            )
        )

    @property
    def models(self) -> list[WhisperAsr]:
        """Each loaded model once."""
        out: list[WhisperAsr] = []
        for asr in [*self.by_language.values(), self.detector]:
            if asr is not None and all(asr is not o for o in out):
                out.append(asr)
        return out

    @property
    def default_model(self) -> WhisperAsr:
        """The model of the default language (the detector when it is auto)."""
        if self.config.detects and self.detector is not None:
            return self.detector
        return self.by_language[self.config.default]

    def model_ids(self) -> dict[str, str]:
        """language -> model id (and ``auto`` -> the detector) for reports and /metrics."""
        out = {lang: asr.model_id for lang, asr in self.by_language.items()}
        if self.detector is not None:
            out[AUTO] = self.detector.model_id
        return out

    def asr_for(self, language: str | None) -> WhisperAsr:
        """The model of a decided language, or the detector while it is not known."""
        if language is None:
            assert self.detector is not None, "no language and no detector"
            return self.detector
        return self.by_language[language]


@dataclass
class CallLanguage:
    """A call's language as it becomes known: requested, configured or detected."""

    config: LanguageConfig
    requested: str | None = None  # what the stream's metadata asked for (as given)
    language: str | None = None  # decided (None: detection still running)
    source: str = "config"  # "metadata" | "config" | "detected"
    confidence: float = 1.0
    _votes: dict[str, float] = field(default_factory=dict)
    _seen: int = 0

    def __post_init__(self) -> None:
        asked = language_of(self.requested)
        if asked is not None and asked in self.config.languages:
            self.language, self.source = asked, "metadata"
        elif asked is not None and asked != AUTO:
            log.warning(
                "a call asked for language %r, which this server does not serve (%s): %s",
                self.requested,
                ", ".join(self.config.languages),
                "detecting it" if self.config.detects else f"using {self.config.default}",
            )
        if self.language is None and not self.config.detects:
            self.language, self.source = self.config.default, "config"
        if self.language is None:
            self.source = "pending"

    @property
    def pending(self) -> bool:
        return self.language is None

    def observe(self, tr: Transcript) -> bool:
        """A transcript made while detecting: True when it decides the call's language."""
        if not self.pending or tr.empty or tr.language not in self.config.languages:
            return False
        self._seen += 1
        self._votes[tr.language] = self._votes.get(tr.language, 0.0) + tr.language_prob
        if tr.language_prob >= LID_MIN_PROB or self._seen >= LID_MAX_UTTERANCES:
            best = max(self._votes, key=lambda k: self._votes[k])
            self.language = best
            self.source = "detected"
            self.confidence = round(self._votes[best] / self._seen, 3)
            return True
        return False

    def event_fields(self) -> dict[str, object]:
        return {
            "language": self.language,
            "source": self.source,
            "confidence": self.confidence,
        }


def language_fields(events: Iterable[dict[str, object]]) -> dict[str, object]:
    """A call's language, model and rule packs as its events tell them: ``call.started``,
    then the ``call.language`` event if detection decided later."""
    keys = ("language", "model", "rule_packs")
    out: dict[str, object] = dict.fromkeys(keys)
    for e in events:
        if e.get("type") in ("call.started", "call.language"):
            out.update({k: e[k] for k in keys if e.get(k) is not None})
    return out


def decide_language(
    pipe: CallPipeline,
    lang: CallLanguage,
    models: LanguageModels,
    packs: Sequence[RulePack],
    assist: AssistLibrary | None,
    t: float,
) -> None:
    """Detection decided: the call gets its language's model, rules and playbook."""
    chosen = packs_for(packs, lang.language)
    pipe.set_language(
        t,
        chosen,
        assist.assistant(lang.language) if assist else None,
        **lang.event_fields(),
        model=models.asr_for(lang.language).model_id,
        rule_packs=[f"{p.pack}@{p.version}" for p in chosen],
    )
