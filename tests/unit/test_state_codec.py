"""The job state as stored in status.ledger (datajob_core.cluster.state_codec)."""

from __future__ import annotations

import json

import pytest

from datajob_core.cluster import state_codec
from datajob_core.cluster.reconciler import JobState, Slot
from datajob_core.shards.ledger import Ledger

pytestmark = pytest.mark.unit


def busy_state(workers: int = 1000, shards: int = 100_000) -> JobState:
    state = JobState(Ledger.new(shards))
    for slot in range(workers):
        pod = f"job-{slot}-1"
        state.slots[slot] = Slot(pod=pod, incarnation=1, created_at=1_700_000_000.0 + slot)
        for _ in range(2):
            assert state.ledger.assign(pod, 1_700_000_100.0 + slot) is not None
    return state


def test_the_stored_state_reads_back_the_same() -> None:
    state = busy_state(workers=50, shards=500)
    assert state_codec.decode(state_codec.encode(state)).to_dict() == state.to_dict()


def test_a_state_stored_by_an_earlier_operator_in_plain_form_is_still_read() -> None:
    state = busy_state(workers=5, shards=20)
    assert state_codec.decode(state.to_dict()).to_dict() == state.to_dict()


def test_a_thousand_workers_state_is_stored_as_one_small_field() -> None:
    state = busy_state()
    stored = state_codec.encode(state)
    assert set(stored) == {"v", "z"}  # one field for managedFields, not thousands of map keys
    plain = len(json.dumps(state.to_dict()))
    assert len(json.dumps(stored)) < plain / 3, (len(json.dumps(stored)), plain)


def test_an_unreadable_stored_state_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"status\.ledger"):
        state_codec.decode({"v": 2, "z": "not base64 zlib"})
