"""fsstress (fsstress.py) on a real mount in every mode: several processes change one tree at
once, and after a sync the tree on the mount must be the host's (names, sizes, contents,
modes, link counts).  BRIDGEFS_FSSTRESS_OPS sets the operations per process for a longer run."""

from __future__ import annotations

import pytest

from exercisekit import MODES, exercise_mount, ops_from_env, run_exerciser

OPS = ops_from_env("BRIDGEFS_FSSTRESS_OPS", 600)
TIMEOUT = 60 + OPS / 10


@pytest.mark.timeout(TIMEOUT + 60)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_fsstress(tmp_path, mode):
    with exercise_mount(tmp_path, MODES[mode]) as (host, mnt):
        (mnt / "tree").mkdir()
        args = [str(mnt / "tree"), "--host", str(host / "tree"), "--procs", "4"]
        out = run_exerciser("fsstress", [*args, "--ops", str(OPS), "--seed", "1"], TIMEOUT)
    print(out)
