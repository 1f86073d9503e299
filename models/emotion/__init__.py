"""Emotion: acoustic arousal per speaker baseline + lexical valence -> labels and anger index.

``VoiceAnalyzer`` measures an utterance's voice, ``EmotionTracker`` keeps each speaker's
baseline and anger index for one call, ``SerModel`` optionally replaces the prosody score
with a trained model loaded from a local folder.
"""

from models.emotion.analysis import EmotionAnalyzer, VoiceMeasure
from models.emotion.lexicon import Valence, text_valence
from models.emotion.tracker import LABELS, EmotionConfig, EmotionReading, EmotionTracker
from models.emotion.voice import VoiceAnalyzer, VoiceFeatures

__all__ = [
    "LABELS",
    "EmotionAnalyzer",
    "EmotionConfig",
    "EmotionReading",
    "EmotionTracker",
    "Valence",
    "VoiceAnalyzer",
    "VoiceFeatures",
    "VoiceMeasure",
    "text_valence",
]
