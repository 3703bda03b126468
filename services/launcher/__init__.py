"""The `aoc` command: embedded launcher (`aoc up`), control CLI, and audit replay."""
