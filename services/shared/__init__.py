"""Libraries that several engines use and no engine owns (engines never import engines)."""
