"""Speech models that run offline on CPU: ASR (faster-whisper), later diarization and emotion."""
