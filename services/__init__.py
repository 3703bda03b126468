"""AOC's services: the seven engines, the shared runtime, and the launcher/CLI."""
