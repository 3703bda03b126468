"""Auto-Deploy Pipeline (`deploy`)."""
