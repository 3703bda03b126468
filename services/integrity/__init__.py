"""Platform Integrity Monitor (`integrity-scan`)."""
