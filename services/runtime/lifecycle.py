"""The engine lifecycle as a pure state machine (no I/O).

    stopped -> starting -> running -> stopping -> stopped

Commands ask for a *settled* state (running or stopped). ``plan`` says which
transitions get there, or that nothing needs to change.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


ALLOWED: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.RUNNING, State.STOPPING}),
    State.RUNNING: frozenset({State.STOPPING}),
    State.STOPPING: frozenset({State.STOPPED}),
}


class IllegalTransition(RuntimeError):
    pass


class Lifecycle:
    def __init__(self) -> None:
        self.state = State.STOPPED

    def move(self, to: State) -> State:
        """Apply one transition; returns the previous state."""
        if to not in ALLOWED[self.state]:
            raise IllegalTransition(f"cannot go from {self.state} to {to}")
        previous, self.state = self.state, to
        return previous

    @staticmethod
    def plan(current: State, target: State) -> list[State]:
        """The transitions from a settled state to a settled target; [] when already there."""
        if current == target:
            return []
        if target == State.RUNNING:
            return [State.STARTING, State.RUNNING]
        if target == State.STOPPED:
            return [State.STOPPING, State.STOPPED]
        raise IllegalTransition(f"{target} is not a settled state")
