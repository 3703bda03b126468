"""The lifecycle state machine, pure."""

import pytest

from services.runtime.lifecycle import IllegalTransition, Lifecycle, State


def test_every_legal_transition_in_order():
    lifecycle = Lifecycle()
    seen = [lifecycle.state]
    for step in (State.STARTING, State.RUNNING, State.STOPPING, State.STOPPED):
        assert lifecycle.move(step) == seen[-1]
        seen.append(lifecycle.state)
    assert seen == ["stopped", "starting", "running", "stopping", "stopped"]


def test_starting_can_be_abandoned():
    lifecycle = Lifecycle()
    lifecycle.move(State.STARTING)
    lifecycle.move(State.STOPPING)
    assert lifecycle.move(State.STOPPED) == State.STOPPING


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (State.STOPPED, State.RUNNING),
        (State.STOPPED, State.STOPPING),
        (State.RUNNING, State.STARTING),
        (State.RUNNING, State.STOPPED),
        (State.STOPPING, State.RUNNING),
    ],
)
def test_illegal_transitions_are_refused(start, to):
    lifecycle = Lifecycle()
    lifecycle.state = start
    with pytest.raises(IllegalTransition):
        lifecycle.move(to)
    assert lifecycle.state == start


def test_plan_to_settled_states():
    assert Lifecycle.plan(State.STOPPED, State.RUNNING) == [State.STARTING, State.RUNNING]
    assert Lifecycle.plan(State.RUNNING, State.STOPPED) == [State.STOPPING, State.STOPPED]
    assert Lifecycle.plan(State.RUNNING, State.RUNNING) == []
    with pytest.raises(IllegalTransition):
        Lifecycle.plan(State.RUNNING, State.STARTING)
