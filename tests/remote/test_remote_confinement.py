"""Confinement seen through a mount: symlinks in a share are text the guest resolves in its own
namespace; the server never follows them on the host.

To tell the two apart, the server runs in a private mount namespace in which /etc/passwd is a
different file (holding a marker), and the share and the mount point sit at different depths, so
that a relative ``../../..`` leads to different places on each side."""

from __future__ import annotations

import os
import pathlib
import signal

import pytest
from waiting import inotify_watched_inodes

from mounting import bridgefs_server, remote_mount
from remotekit import mount_status, poll, wait_events_flowing

MARKER = "HOST-ONLY-SECRET"
# The server's command runs after /etc/passwd is replaced by $FAKE in a mount namespace of its
# own (private propagation: the bind mount never shows in the test's namespace).
PRIVATE_PASSWD = [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount --bind "$BRIDGEFS_FAKE_PASSWD" /etc/passwd && exec "$0" "$@"',
]


@pytest.fixture
def confined(tmp_path, monkeypatch):
    """(share on the host, mount point, server process): the share is tmp/h1/h2/h3/h4/share,
    the mount point tmp/g1/g2/mnt, and the server sees a fake /etc/passwd."""
    fake = tmp_path / "fake-passwd"
    fake.write_text(f"{MARKER}:x:0:0::/:/bin/false\n")
    monkeypatch.setenv("BRIDGEFS_FAKE_PASSWD", str(fake))
    share = tmp_path / "h1" / "h2" / "h3" / "h4" / "share"
    share.mkdir(parents=True)
    mnt = tmp_path / "g1" / "g2" / "mnt"
    with bridgefs_server(
        {"share": str(share)}, f"unix:{tmp_path / 'server.sock'}", wrap=PRIVATE_PASSWD
    ) as (address, server):
        # The construction works: the server's /etc/passwd is the fake, the test's is not.
        with open(f"/proc/{server.pid}/root/etc/passwd") as f:
            assert f.read().startswith(MARKER), "the server does not see the fake /etc/passwd"
        with open("/etc/passwd") as f:
            assert MARKER not in f.read()
        with remote_mount(address, "share", mnt):
            yield share, mnt, server


def test_absolute_symlink_resolves_in_the_guest(confined):
    share, mnt, _ = confined
    os.symlink("/etc/passwd", share / "passwd-link")
    os.symlink("/etc", share / "etc-link")
    real = pathlib.Path("/etc/passwd").read_bytes()
    assert os.readlink(mnt / "passwd-link") == "/etc/passwd"
    assert os.path.islink(mnt / "passwd-link")
    # Opening it follows the link in the guest: the guest's own /etc/passwd, never the host's.
    got = (mnt / "passwd-link").read_bytes()
    assert MARKER.encode() not in got
    assert got == real
    assert os.stat(mnt / "passwd-link").st_ino == os.stat("/etc/passwd").st_ino
    assert (mnt / "etc-link" / "passwd").read_bytes() == real
    assert os.path.realpath(mnt / "etc-link" / "passwd") == "/etc/passwd"


def test_dotdot_symlink_resolves_relative_to_the_mount_point(confined, tmp_path):
    share, mnt, _ = confined
    # Same relative path, different places: tmp/g1/g2/mnt/../../.. is tmp, while on the host
    # tmp/h1/h2/h3/h4/share/../../.. is tmp/h1/h2.
    (tmp_path / "which-side").write_text("guest\n")
    (tmp_path / "h1" / "h2" / "which-side").write_text("host\n")
    os.symlink("../../..", share / "escape")
    os.symlink("../../../which-side", share / "escape-file")
    os.mkdir(share / "sub")
    # From sub: ../../../.. is tmp in the guest, tmp/h1/h2 on the host.
    os.symlink("../../../../which-side", share / "sub" / "deep")
    assert os.readlink(mnt / "escape") == "../../.."
    assert (mnt / "escape" / "which-side").read_text() == "guest\n"
    assert (mnt / "escape-file").read_text() == "guest\n"
    assert os.path.realpath(mnt / "escape") == str(tmp_path)
    assert sorted(os.listdir(mnt / "escape")) == sorted(os.listdir(tmp_path))
    assert (mnt / "sub" / "deep").read_text() == "guest\n"
    assert os.path.realpath(mnt / "sub" / "deep") == str(tmp_path / "which-side")
    # '..' of the mount point is the guest's directory above it.
    assert os.path.samefile(mnt / "..", mnt.parent)
    assert os.path.samefile(mnt / ".." / ".." / "..", tmp_path)
    # Nothing outside the share on the host was changed or created through the mount.
    assert (tmp_path / "h1" / "h2" / "which-side").read_text() == "host\n"
    assert sorted(os.listdir(tmp_path / "h1" / "h2")) == ["h3", "which-side"]


def test_writing_through_a_symlink_writes_in_the_guest(confined, tmp_path):
    share, mnt, _ = confined
    guest_target = tmp_path / "guest-target"
    os.symlink(str(guest_target), share / "out-link")
    (mnt / "out-link").write_text("written via the link\n")
    # The guest kernel followed the link: the file is created where the link points in the
    # guest, and the share holds nothing but the link, unchanged.
    assert guest_target.read_text() == "written via the link\n"
    assert sorted(os.listdir(share)) == ["out-link"]
    assert os.readlink(share / "out-link") == str(guest_target)


def test_symlink_loop_is_eloop_in_the_guest(confined):
    share, mnt, _ = confined
    os.symlink("loop-b", share / "loop-a")
    os.symlink("loop-a", share / "loop-b")
    with pytest.raises(OSError) as info:
        open(mnt / "loop-a")
    assert info.value.errno == 40  # ELOOP
    assert os.readlink(mnt / "loop-a") == "loop-b"


# --- replays of host changes stay inside the mount ---------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="events"),
        pytest.param(["--no-events"], id="no-events"),
    ],
)
def test_host_changes_never_act_outside_the_mount(tmp_path, extra):
    """The host replaces a directory of the share by a symlink to a guest directory while the
    client is busy (stopped here); replaying the queued changes afterwards must not touch the
    guest directory the symlink names."""
    share = tmp_path / "share"
    share.mkdir()
    guest = tmp_path / "guest-only"
    guest.mkdir()
    (guest / "victim").write_text("guest data\n")
    (guest / "d-file").write_text("guest data too\n")
    mnt = tmp_path / "mnt"
    # The server does not even see the guest directory: an empty tmpfs covers it in its view.
    hide = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'mount -t tmpfs none {guest} && exec "$0" "$@"',
    ]
    with bridgefs_server({"share": str(share)}, f"unix:{tmp_path / 'server.sock'}", wrap=hide) as (
        address,
        server,
    ):
        assert os.listdir(f"/proc/{server.pid}/root{guest}") == []
        with remote_mount(address, "share", mnt, *extra) as client:
            if not extra:
                wait_events_flowing(mnt)
            os.listdir(mnt)
            client.send_signal(signal.SIGSTOP)  # the client falls behind the host's changes
            try:
                (share / "d").mkdir()
                if not extra:
                    # Changes inside d are reported once the server watches d.
                    ino = os.stat(share / "d").st_ino
                    poll(
                        lambda: ino in (inotify_watched_inodes(server.pid) or set()),
                        what="the server watches the new directory",
                    )
                (share / "d" / "victim").write_text("host\n")
                (share / "d" / "victim").unlink()
                (share / "d").rmdir()
                os.symlink(str(guest), share / "d")
            finally:
                client.send_signal(signal.SIGCONT)
            poll(lambda: os.path.islink(mnt / "d"), what="the mount shows d as a symlink")
            assert os.readlink(mnt / "d") == str(guest)
            if not extra:
                # Every queued change has been taken in (the replay of 'DELETED d/victim' too).
                # Each is counted as received before it is replayed, and as (not) replayed after.
                def all_replayed():
                    got = mount_status(mnt)
                    done = sum(got.get(k, 0) for k in ("replayed", "not_replayed", "overflows"))
                    return got.get("received", 0) >= 4 and done >= got["received"]

                poll(all_replayed, what="the client took in and replayed the host's changes")
            assert sorted(os.listdir(guest)) == ["d-file", "victim"], (
                "a replayed host change deleted a guest file outside the mount"
            )
            assert (guest / "victim").read_text() == "guest data\n"
