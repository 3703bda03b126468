"""Autonomous SOC Engine (`soc-cycle`)."""
