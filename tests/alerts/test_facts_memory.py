"""A pipeline's facts stay small however long the agent runs, and still count a run reported twice once."""

from __future__ import annotations

from agent.records import RunStatus
from alerts.facts import PipelineFacts, RunFact


def test_a_run_reported_twice_counts_once_after_many_runs() -> None:
    """After 10,000 runs the newest run reported again is recognised, and the failure streak is not doubled."""
    facts = PipelineFacts("orders")
    for i in range(10_000):
        assert facts.add(RunFact(f"r{i}", RunStatus.SUCCESS, float(i), 0.1))
        facts.trim(i - 600.0, 5000)
    failed = RunFact("r10000", RunStatus.FAILED, 10_000.0, 0.1)
    assert facts.add(failed) and not facts.add(failed)
    assert facts.streak == 1


def test_the_remembered_run_keys_are_bounded() -> None:
    """A pipeline that ran 10,000 times remembers a few dozen run keys, not thousands."""
    facts = PipelineFacts("orders")
    for i in range(10_000):
        facts.add(RunFact(f"r{i}", RunStatus.SUCCESS, float(i), 0.1))
        facts.trim(i - 600.0, 5000)
    assert len(facts._keys) <= 64 and len(facts._key_order) <= 64
    assert len(facts.runs) <= 601
