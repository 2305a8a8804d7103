"""The overlay's value and the options' parsing, without a mount."""

from __future__ import annotations

import stat

import pytest

from bridgefs.server.ownership import Config, Record, host_perm, parse_owner


def test_a_record_reads_back_what_it_wrote():
    record = Record(1000, 2000, stat.S_IFCHR | 0o4755, 259)
    assert record.encode() == b"v1 1000 2000 24755 259"
    assert Record.decode(record.encode()) == record


@pytest.mark.parametrize(
    "raw", [b"", b"v2 1 2 100644 0", b"v1 1 2 100644", b"v1 x 2 100644 0", b"v1 -1 2 100644 0"]
)
def test_what_is_not_a_record_shows_the_host_values(raw):
    assert Record.decode(raw) is None


def test_host_files_keep_the_rwx_bits_and_what_the_server_needs():
    assert host_perm(stat.S_IFREG | 0o4000) == 0o600
    assert host_perm(stat.S_IFREG | 0o6755) == 0o755
    assert host_perm(stat.S_IFDIR | 0o3000) == 0o700
    assert host_perm(stat.S_IFDIR | 0o1777) == 0o775  # no host user may empty it
    assert host_perm(stat.S_IFREG | 0o666) == 0o664


def test_options():
    assert parse_owner("1000:100") == (1000, 100)
    for bad in ("1000", "a:b", ":1", "1:-2"):
        with pytest.raises(ValueError):
            parse_owner(bad)
    with pytest.raises(ValueError):
        Config(mode="root")
