"""Call sessions, the audit pipeline, events, store and the command line."""
