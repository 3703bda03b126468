"""Libraries that more than one service uses and no engine owns (an engine never
imports another engine; DESIGN.md). ``egress``: where a service may connect to."""
