"""Threat Advisory Engine (`advisory-refresh`)."""
