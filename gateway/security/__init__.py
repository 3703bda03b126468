"""Authentication, authorization and HTTP hardening of the gateway (docs/security.md)."""
