"""A real Linux guest under QEMU (emulated CPU), the server on this host, bridgefs between them
over virtio-serial ports: no network device in the guest at all.

One guest boots per test session (about 7 s); its very first command is the README's VM block.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import image  # noqa: E402
import qemu  # noqa: E402

README = image.REPO / "README.md"
README_MARK = "<!-- tests/vm runs the next block in a guest, as it stands -->"


def require_vm() -> None:
    """In CI a missing QEMU (or root, mkfs.ext4, busybox) is a failure, never a skip."""
    problem = None
    if qemu.qemu_binary() is None:
        problem = "qemu-system-x86_64 is missing (scripts/setup.sh installs qemu-system-x86)"
    elif not shutil.which("busybox"):
        problem = "busybox is missing (scripts/setup.sh installs busybox-static)"
    elif not shutil.which("mkfs.ext4"):
        problem = "mkfs.ext4 is missing"
    elif os.geteuid() != 0:
        problem = "building the guest's images needs root"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}: the VM tests may not be skipped in CI")
        pytest.skip(problem)


def readme_vm_block() -> str:
    text = README.read_text()
    at = text.index(README_MARK)
    m = re.search(r"```sh\n(.*?)```", text[at:], re.S)
    assert m, "no sh block after the README's VM mark"
    return m.group(1)


class HostServer:
    """`bridgefs serve` on this host with a serial: listen for QEMU; can be killed and restarted."""

    def __init__(self, socket_path: pathlib.Path, shares: dict[str, str]):
        self.socket_path = socket_path
        self.shares = shares
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "bridgefs", "serve", "--listen", f"serial:{self.socket_path}"]
        for name, spec in self.shares.items():
            args += ["--share", f"{name}={spec}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"the server did not start ({self.proc.wait()})")
            if "listening on serial:" in line:
                return

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


class VM:
    def __init__(
        self,
        guest: qemu.Guest,
        server: HostServer,
        host: pathlib.Path,
        host_ro: pathlib.Path,
        boot_seconds: float,
        first: dict,
    ):
        self.guest = guest
        self.server = server
        self.host = host  # served as "src" (the README's share) and "share"
        self.host_ro = host_ro  # served read-only as "docs"
        self.boot_seconds = boot_seconds
        self.first = first  # what the README's block did as the first command after boot

    @contextlib.contextmanager
    def mount(self, port: int, share: str, mnt: str, *, uid: int = 0, options: str = ""):
        """`bridgefs mount serial:org.bridgefs.PORT SHARE MNT` in the guest; always unmounted."""
        g = self.guest
        g.sh(f"mkdir -p {mnt} && chown {uid} {mnt}")
        if uid:  # as an administrator would with a udev rule: the user may use this port
            g.sh(
                f"chown {uid} /dev/$(basename $(dirname $(grep -lx {qemu.PORT_NAMES[port]} "
                f"/sys/class/virtio-ports/*/name)))"
            )
        g.sh(
            f"bridgefs mount serial:{qemu.PORT_NAMES[port]} {share} {mnt} {options}",
            uid=uid,
            timeout=90,
        )
        try:
            yield mnt
        finally:
            if f" {mnt} " in g.sh("cat /proc/mounts")["out"]:  # (else the test unmounted it)
                _unmount(g, mnt, uid)


def _unmount(g, mnt: str, uid: int | None) -> None:
    # The client may still be replaying a burst of host changes (the figures test makes 10,100
    # files on the host; under emulation their replays take minutes), each holding a file of
    # the mount open for a moment: a plain umount then says "busy".  The tests that are about
    # unmounting check it themselves; here a mount still busy after a minute is detached.
    deadline = time.monotonic() + 60
    while True:
        done = g.sh(f"bridgefs umount {mnt}", uid=uid, check=False)
        if done["rc"] == 0 or "busy" not in done["err"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if done["rc"] != 0 and "busy" in done["err"]:
        done = g.sh(f"bridgefs umount -z {mnt}", uid=uid, check=False)
    if done["rc"] != 0:
        g.sh(f"umount -l {mnt}", check=False)
        pytest.fail(f"bridgefs umount {mnt} failed: {done['err']}")


@pytest.fixture(scope="session")
def vm(tmp_path_factory):
    require_vm()
    images = image.build()
    work = tmp_path_factory.mktemp("vm")
    code = image.code_image(work / "code.ext4")
    host = work / "host"
    host_ro = work / "host-ro"
    host.mkdir()
    host_ro.mkdir()
    (host_ro / "readme.txt").write_text("read only\n")
    server = HostServer(
        work / "bridgefs-vm.sock", {"src": str(host), "share": str(host), "docs": f"{host_ro}:ro"}
    )
    server.start()
    guest = qemu.Guest(images, code, work, server.socket_path)
    try:
        boot = guest.connect_agent()
        # The README's VM-side commands, verbatim, as the first thing run after the boot.
        first = guest.sh(readme_vm_block(), check=False, timeout=120)
        yield VM(guest, server, host, host_ro, boot, first)
    finally:
        guest.close()
        server.stop()


@pytest.fixture(scope="session")
def shared(vm):
    """The share mounted at /mnt/share in the guest, for the tests needing no mount of their own."""
    with vm.mount(0, "share", "/mnt/share") as mnt:
        yield mnt


@pytest.fixture
def server_restored(vm):
    """For tests that kill the server: it is running again afterwards."""
    yield vm.server
    if vm.server.proc is None or vm.server.proc.poll() is not None:
        vm.server.start()
