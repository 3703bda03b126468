"""Self-Healing Engine (`heal-check`)."""
