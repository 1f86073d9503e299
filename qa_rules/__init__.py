"""QA rules: YAML rule packs, language-aware matching and a stateful per-call engine.

The engine is fed events in time order and never looks ahead, so the same code scores a
finished recording and a call that is still going on.
"""
