"""Telephony stream adapters, sans-IO: messages in, per-channel 16 kHz audio and replies out.

Each adapter is fed the WebSocket messages of one call (``on_text`` / ``on_bytes``) and
returns a ``Feed``: the call's metadata when it starts, decoded audio per channel, messages
to send back, and whether the call ended. No sockets here, so adapters are tested and
fuzzed directly; ``assist.server`` does the I/O.
"""
