"""bridgefs where users run it: the client in a real Linux guest's kernel, the server on this
host, a virtio-serial port between them."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
from qemu import wait_for

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = (
    0x2,
    0x4,
    0x40,
    0x80,
    0x100,
    0x200,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_first_mount_after_boot_runs_the_readme_verbatim(vm):
    """The README's VM-side block, the first command after a fresh boot (empty /run, read-only
    root, no /etc/mtab, no HOME): mount, status, stats and umount all succeed."""
    first = vm.first
    assert first["rc"] == 0, f"README block failed:\n{first['out']}\n{first['err']}"
    assert "flowing" in first["out"], first["out"]  # status: host changes flow
    assert "rpc " in first["out"], first["out"]  # stats: round trips were counted
    assert "/mnt/src" not in vm.guest.sh("cat /proc/mounts")["out"]
    assert "bridgefs" in vm.guest.sh("ls /run")["out"]  # made by the mount on an empty /run


def test_mount_as_a_user_through_fusermount3(vm):
    """A user other than root, without a home folder or XDG_RUNTIME_DIR, mounts through the
    guest's fusermount3, reads and writes (the files presented as the user's), asks for status,
    and unmounts."""
    (vm.host / "for-user.txt").write_text("hello user\n")
    # fusermount3 checks a user's unmount against /etc/mtab: a distribution links it to the
    # mount table (here /etc/mtab -> /run/mtab, which leads nowhere after the boot).
    vm.guest.sh("ln -sf /proc/self/mounts /run/mtab")
    with vm.mount(2, "share", "/tmp/usermnt", uid=1000, options="--uid 1000 --gid 1000") as mnt:
        g = vm.guest
        assert g.sh(f"cat {mnt}/for-user.txt", uid=1000)["out"] == "hello user\n"
        g.sh(f"echo from-user > {mnt}/by-user.txt", uid=1000)
        assert (vm.host / "by-user.txt").read_text() == "from-user\n"
        status = json.loads(g.sh(f"bridgefs status --json {mnt}", uid=1000)["out"])
        assert status["ready"] is True
        assert "fuse.bridgefs" in g.sh("cat /proc/mounts")["out"]
    assert "/tmp/usermnt" not in vm.guest.sh("cat /proc/mounts")["out"]


def test_read_write_mkdir_rename_unlink_reach_the_host(vm, shared):
    g = vm.guest
    data = os.urandom((1 << 20) + 4099)
    (vm.host / "from-host.bin").write_bytes(data)
    assert g.sh(f"sha256sum {shared}/from-host.bin")["out"].split()[0] == _sha(data)

    g.sh(
        f"dd if=/dev/urandom of=/tmp/guest.bin bs=65536 count=48 2>/dev/null && "
        f"cp /tmp/guest.bin {shared}/from-guest.bin"
    )
    guest_sha = g.sh("sha256sum /tmp/guest.bin")["out"].split()[0]
    assert _sha((vm.host / "from-guest.bin").read_bytes()) == guest_sha

    g.sh(f"mkdir {shared}/d1 && mkdir {shared}/d1/d2 && echo abc > {shared}/d1/d2/f")
    assert (vm.host / "d1/d2/f").read_text() == "abc\n"
    g.sh(f"mv {shared}/d1/d2/f {shared}/d1/g && mv {shared}/d1/d2 {shared}/d3")
    assert (vm.host / "d1/g").read_text() == "abc\n" and (vm.host / "d3").is_dir()
    assert not (vm.host / "d1/d2").exists()
    g.sh(f"rm {shared}/d1/g && rmdir {shared}/d1 {shared}/d3 && rm {shared}/from-guest.bin")
    assert not (vm.host / "d1").exists() and not (vm.host / "from-guest.bin").exists()


def test_absolute_symlink_resolves_in_the_guest(vm, shared):
    """The host never follows links: a link to /etc/passwd is the guest's /etc/passwd."""
    os.symlink("/etc/passwd", vm.host / "abs-link")
    out = vm.guest.sh(f"readlink {shared}/abs-link && cat {shared}/abs-link")["out"]
    assert out.startswith("/etc/passwd\n") and "vmuser" in out  # only the guest has vmuser
    vm.guest.sh(f"ln -s /etc/hostname {shared}/guest-link")
    assert os.readlink(vm.host / "guest-link") == "/etc/hostname"


def _setup_none(d):
    pass


def _setup_file(d):
    (d / "f").write_text("old\n")


def _atomic_save(d):
    (d / ".f.swp").write_text("saved atomically\n")
    os.rename(d / ".f.swp", d / "f")


EVENTS = {
    # name: (host setup, host change, expected (mask, name) events, guest check)
    "create": (
        _setup_none,
        lambda d: (d / "f").write_text("created\n"),
        [(IN_CREATE, "f")],
        "cat f",
        "created\n",
    ),
    "modify": (
        _setup_file,
        lambda d: open(d / "f", "a").write("more\n"),
        [(IN_MODIFY, "f")],
        "cat f",
        "old\nmore\n",
    ),
    "atomic_save": (_setup_file, _atomic_save, [(IN_MOVED_TO, "f")], "cat f", "saved atomically\n"),
    "delete": (
        _setup_file,
        lambda d: os.unlink(d / "f"),
        [(IN_DELETE, "f")],
        "test -e f || echo gone",
        "gone\n",
    ),
    "rename": (
        _setup_file,
        lambda d: os.rename(d / "f", d / "g"),
        [(IN_MOVED_FROM, "f"), (IN_MOVED_TO, "g")],
        "cat g",
        "old\n",
    ),
    "chmod": (
        _setup_file,
        lambda d: os.chmod(d / "f", 0o600),
        [(IN_ATTRIB, "f")],
        "stat -c %a f",
        "600\n",
    ),
}

INOTIFYWAIT_NAMES = {
    IN_MODIFY: "MODIFY",
    IN_ATTRIB: "ATTRIB",
    IN_MOVED_FROM: "MOVED_FROM",
    IN_MOVED_TO: "MOVED_TO",
    IN_CREATE: "CREATE",
    IN_DELETE: "DELETE",
}


@pytest.mark.parametrize("kind", list(EVENTS))
def test_host_change_reaches_an_inotify_watcher_in_the_guest(vm, shared, kind):
    """inotifywait in the guest hears the host's change, and the new state is what it reads."""
    setup, change, expected, check, want = EVENTS[kind]
    g = vm.guest
    d = vm.host / f"ev-{kind}"
    d.mkdir()
    setup(d)
    gd = f"{shared}/ev-{kind}"
    wait_for(lambda: g.sh(f"ls {gd}", check=False)["rc"] == 0)
    g.sh(f"ls -l {gd}")  # the guest knows the files before they change
    g.spawn(f"watch-{kind}", f"exec inotifywait -m --format '%e %f' {gd}")
    try:
        wait_for(lambda: "Watches established" in g.read(f"watch-{kind}")[0])
        change(d)
        for mask, name in expected:
            wait_for(
                lambda mask=mask, name=name: any(
                    INOTIFYWAIT_NAMES[mask] in line.split()[0].split(",")
                    and line.split()[-1] == name
                    for line in g.read(f"watch-{kind}")[0].splitlines()[2:]
                    if line.strip()
                )
            )
    finally:
        g.kill(f"watch-{kind}")
    assert g.sh(f"cd {gd} && {check}")["out"] == want


def test_read_only_share_refuses_writes(vm):
    with vm.mount(1, "docs", "/mnt/docs") as mnt:
        g = vm.guest
        assert g.sh(f"cat {mnt}/readme.txt")["out"] == "read only\n"
        answer = g.sh(f"echo x > {mnt}/new.txt", check=False)
        assert answer["rc"] != 0 and "Read-only file system" in answer["err"], answer
        answer = g.sh(f"rm {mnt}/readme.txt", check=False)
        assert answer["rc"] != 0 and "Read-only file system" in answer["err"], answer
    assert sorted(os.listdir(vm.host_ro)) == ["readme.txt"]


def test_killed_server_errors_in_bounded_time_and_umount_works(vm, server_restored):
    with vm.mount(3, "share", "/mnt/kill") as mnt:
        g = vm.guest
        g.sh(f"echo alive > {mnt}/kill-probe")
        vm.server.kill()
        start = time.monotonic()
        answer = g.sh(f"echo x > {mnt}/after-kill", check=False)
        elapsed = time.monotonic() - start
        assert answer["rc"] != 0 and "not connected" in answer["err"], answer
        assert elapsed < 10, f"the error took {elapsed:.1f} s"
        g.sh(f"bridgefs umount {mnt}")
        assert mnt not in g.sh("cat /proc/mounts")["out"]
    vm.server.start()


def test_restarted_server_resumes_the_mount_and_events(vm, shared, server_restored):
    g = vm.guest
    (vm.host / "restart").mkdir()
    (vm.host / "restart/before").write_text("before\n")
    wait_for(lambda: g.sh(f"cat {shared}/restart/before", check=False)["out"] == "before\n")
    vm.server.kill()
    vm.server.start()
    (vm.host / "restart/after").write_text("after\n")
    wait_for(
        lambda: g.sh(f"cat {shared}/restart/after", check=False)["out"] == "after\n",
        timeout=60,
        interval=0.5,
    )
    wait_for(
        lambda: json.loads(g.sh(f"bridgefs status --json {shared}")["out"])["events"] == "flowing",
        timeout=60,
        interval=0.5,
    )
    g.spawn("watch-restart", f"exec inotifywait -m --format '%e %f' {shared}/restart")
    try:
        wait_for(lambda: "Watches established" in g.read("watch-restart")[0])
        (vm.host / "restart/new").write_text("new\n")
        wait_for(lambda: "CREATE new" in g.read("watch-restart")[0])
    finally:
        g.kill("watch-restart")
    assert g.sh(f"cat {shared}/restart/new")["out"] == "new\n"


def test_guest_status_and_stats(vm, shared):
    g = vm.guest
    status = json.loads(g.sh(f"bridgefs status --json {shared}")["out"])
    assert status["ready"] is True and status["events"] == "flowing", status
    assert status["mountpoint"] == shared
    g.sh(f"ls -la {shared} >/dev/null")
    stats = json.loads(g.sh(f"bridgefs stats --json {shared}")["out"])
    assert stats["fuse"] and sum(s["count"] for s in stats["fuse"].values()) > 0
    assert stats["rpc"], stats
    text = g.sh(f"bridgefs stats {shared}")["out"]
    assert text.startswith("request") and "rpc " in text
