"""Several users on one share: every scenario runs on a native directory and through each kind of
mount, and every result (values, and EACCES or EPERM exactly where native gives them) must be
the same; after it the host side must hold nothing a guest could use as host privilege."""

from __future__ import annotations

import pytest
from userkit import ROOT, Site, Who, host_problems

A = Who(1000, 1000)  # node
B = Who(1001, 1001)
AG = Who(1000, 1000, (1000, 2000))  # A, in group 2000 too
BG = Who(1001, 1001, (1001, 2000))
NOBODY = Who(65534, 65534)

# A table: each step on a line or two reads as what happens, in order.
# fmt: off
SCENARIOS = {
    "own directories": [
        (ROOT, [["mkdir", "a", 0o755], ["chown", "a", 1000, 1000],
                ["mkdir", "b", 0o755], ["chown", "b", 1001, 1001]]),
        (A, [["create", "a/f", 0o644], ["chmod", "a/f", 0o600], ["stat", "a/f"],
             ["chmod", "a/f", 0o4755], ["stat", "a/f"], ["chmod", "a/f", 0o644],
             ["create", "b/x", 0o644], ["chown", "a/f", 1001, -1], ["chown", "a/f", -1, 1000],
             ["chown", "a/f", -1, 2000], ["mkdir", "a/d", 0o700], ["stat", "a/d"],
             ["create", "a/d/inner", 0o600], ["stat", "a"]]),
        (B, [["read", "a/f"], ["write", "a/f", "b"], ["chmod", "a/f", 0o777],
             ["unlink", "a/f"], ["list", "a/d"], ["stat", "a/d/inner"],
             ["chown", "a/f", 1001, 1001], ["create", "b/mine", 0o600], ["stat", "b/mine"]]),
        (AG, [["chown", "a/f", -1, 2000], ["stat", "a/f"]]),
        (NOBODY, [["create", "a/y", 0o644], ["read", "a/f"], ["stat", "b/mine"]]),
        (ROOT, [["chown", "a/f", 1001, 1001], ["stat", "a/f"], ["read", "b/mine"],
                ["chmod", "b/mine", 0o640], ["stat", "b/mine"]]),
        (B, [["chmod", "a/f", 0o600], ["read", "a/f"], ["unlink", "b/mine"]]),
        (A, [["read", "a/f"], ["unlink", "a/f"], ["list", "a"]]),
    ],
    "sticky directory": [
        (ROOT, [["mkdir", "t", 0o777], ["chmod", "t", 0o1777], ["stat", "t"]]),
        (A, [["create", "t/fa", 0o666], ["chmod", "t/fa", 0o666], ["symlink", "fa", "t/la"],
             ["mkdir", "t/da", 0o777], ["chmod", "t/da", 0o777], ["stat", "t/la"]]),
        (B, [["create", "t/fb", 0o644], ["unlink", "t/fa"], ["rename", "t/fa", "t/x"],
             ["unlink", "t/la"], ["rmdir", "t/da"], ["write", "t/fa", "b"], ["stat", "t/la"],
             ["create", "t/da/in-a", 0o644], ["rename", "t/fb", "t/fb2"], ["unlink", "t/fb2"]]),
        (A, [["unlink", "t/la"], ["unlink", "t/da/in-a"], ["unlink", "t/fa"],
             ["rmdir", "t/da"], ["list", "t"]]),
        (ROOT, [["create", "t/fr", 0o666]]),
        (A, [["unlink", "t/fr"], ["write", "t/fr", "a"]]),
    ],
    "setgid directories": [
        (ROOT, [["mkdir", "g", 0o775], ["chown", "g", 0, 2000], ["chmod", "g", 0o2775],
                ["mkdir", "o", 0o777], ["chown", "o", 0, 2000], ["chmod", "o", 0o2777]]),
        (AG, [["create", "g/f", 0o644], ["stat", "g/f"], ["mkdir", "g/d", 0o755],
              ["stat", "g/d"], ["create", "g/d/f2", 0o644], ["stat", "g/d/f2"],
              ["create", "g/s", 0o2755], ["stat", "g/s"], ["chmod", "g/f", 0o2755],
              ["stat", "g/f"]]),
        (B, [["create", "g/x", 0o644], ["create", "o/x", 0o2755], ["stat", "o/x"],
             ["chmod", "o/x", 0o2755], ["stat", "o/x"], ["mkdir", "o/d", 0o755],
             ["stat", "o/d"]]),
        (A, [["create", "g/y", 0o644], ["chmod", "g/f", 0o2700], ["stat", "g/f"]]),
    ],
    "group permissions": [
        (ROOT, [["mkdir", "p", 0o755], ["create", "p/f", 0o640], ["write", "p/f", "secret"],
                ["chown", "p/f", 1000, 2000], ["mkdir", "p/gd", 0o770],
                ["chown", "p/gd", 0, 2000]]),
        (BG, [["read", "p/f"], ["write", "p/f", "b"], ["create", "p/gd/bg", 0o644],
              ["stat", "p/gd/bg"]]),
        (B, [["read", "p/f"], ["list", "p/gd"]]),
        (ROOT, [["chmod", "p/f", 0o660]]),
        (BG, [["write", "p/f", "b"], ["read", "p/f"]]),
        (ROOT, [["chmod", "p/f", 0o606]]),
        (BG, [["read", "p/f"]]),
        (B, [["read", "p/f"]]),
        (AG, [["read", "p/f"], ["unlink", "p/gd/bg"]]),
    ],
    "renames between owners": [
        (ROOT, [["mkdir", "a", 0o755], ["chown", "a", 1000, 1000], ["mkdir", "b", 0o755],
                ["chown", "b", 1001, 1001], ["mkdir", "w", 0o777], ["chmod", "w", 0o777]]),
        (A, [["create", "a/f", 0o644], ["rename", "a/f", "b/f"], ["rename", "a/f", "w/f"],
             ["mkdir", "a/d", 0o755], ["rename", "a/d", "w/d"], ["stat", "w/f"]]),
        (B, [["rename", "w/f", "w/g"], ["rename", "w/d", "b/d"], ["rename", "w/g", "b/g"],
             ["stat", "b/g"], ["rename", "b/g", "a/g"]]),
    ],
    "special files and set-id bits": [
        (ROOT, [["mkdir", "a", 0o777], ["chmod", "a", 0o777]]),
        (A, [["mkfifo", "a/p", 0o644], ["stat", "a/p"], ["mknod_chr", "a/c", 0o644, 1, 3],
             ["create", "a/s", 0o755], ["chmod", "a/s", 0o6777], ["stat", "a/s"],
             ["create", "a/t", 0o755], ["chmod", "a/t", 0o4777]]),
        (B, [["write", "a/s", "x"], ["truncate", "a/t", 0]]),
        (A, [["stat", "a/s"], ["stat", "a/t"], ["unlink", "a/p"]]),
    ],
}
# fmt: on


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_results_as_native(site, native, scenario):
    steps = SCENARIOS[scenario]
    want = native.play(steps)
    flat = [r for step in want for r in step]
    # The scenario means something: native refuses some of it, with both errors somewhere.
    assert any(r[0] == "err" for r in flat)
    got = site.play(steps)
    for (who, ops), w, g in zip(steps, want, got, strict=True):
        for op, wr, gr in zip(ops, w, g, strict=True):
            assert gr == wr, f"{site.kind}: {op} as {who}: native {wr}, mount {gr}"
    assert host_problems(site) == []


def test_errno_kinds_are_exercised(native):
    """EACCES and EPERM both come up in the scenarios on native: the comparison covers both."""
    seen = set()
    for i, steps in enumerate(SCENARIOS.values()):
        place = native.root / str(i)
        place.mkdir()
        place.chmod(0o755)
        for step in Site("native", place).play(steps):
            seen.update(r[1] for r in step if r[0] == "err")
    assert {"EACCES", "EPERM"} <= seen
