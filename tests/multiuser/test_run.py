"""`bridgefs run` as root, as a new user tries it: processes of other uids reach the share and
own what they make; `--no-allow-other` keeps them out."""

from __future__ import annotations

import pytest
from userkit import ROOT, Site, Who

from mounting import mounted_by

NOBODY = Who(65534, 65534)


@pytest.fixture
def place(world, request):
    d = world / f"run-{request.node.name[:40]}"
    (d / "host").mkdir(parents=True)
    return d


def test_other_users_use_the_share_and_chmod_what_they_make(place):
    with mounted_by(["run", str(place / "host"), str(place / "mnt")], place / "mnt"):
        site = Site("overlay", place / "mnt", place / "host", 0)
        site.act(ROOT, [["mkdir", "n", 0o755], ["chown", "n", 65534, 65534]])
        assert site.act(
            NOBODY, [["create", "n/f", 0o644], ["chmod", "n/f", 0o600], ["stat", "n/f"]]
        ) == [["ok", None], ["ok", None], ["ok", [65534, 65534, oct(0o100600)]]]


def test_no_allow_other_keeps_other_users_out(place):
    args = ["run", str(place / "host"), str(place / "mnt"), "--no-allow-other"]
    with mounted_by(args, place / "mnt"):
        site = Site("overlay", place / "mnt", place / "host", 0)
        assert site.act(ROOT, [["mkdir", "d", 0o777]]) == [["ok", None]]
        refused = site.shell(NOBODY, "ls .")
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
