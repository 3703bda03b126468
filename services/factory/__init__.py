"""Frontend Factory Engine (`frontend-factory`)."""
