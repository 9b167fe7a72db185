"""The operator names itself in kopf's peering records without the passwd database.

The chart runs the image as uid 65532, which has no passwd entry: kopf's default identity
(``getpass.getuser()``) raised there and the operator crash-looped on every cluster.
"""

from __future__ import annotations

import getpass
import os
import pwd
import socket

import pytest

from datajob_operator.__main__ import peering_identity


def test_identity_is_the_pod_name_when_the_chart_passes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_ID", raising=False)
    monkeypatch.setenv("POD_NAME", "datajob-operator-5d9f-abcde")
    assert peering_identity() == "datajob-operator-5d9f-abcde"


def test_identity_works_for_a_uid_without_passwd_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in the image: no user variables, and the passwd lookup getpass falls back to raises.
    for variable in ("USER", "LOGNAME", "LNAME", "USERNAME", "POD_ID", "POD_NAME"):
        monkeypatch.delenv(variable, raising=False)

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(KeyError):
        getpass.getuser()  # what kopf's default identity calls
    identity = peering_identity()
    assert identity == f"{socket.gethostname()}-{os.getpid()}"
