"""The SIEM service (not an engine): SIEM sinks and control-plane alert rules.
The story is in ``service.py``."""
