"""The four columns: the native folder and the three ways to mount it, each started and stopped
by the benchmark itself.

Everything started goes through a ``Registry`` so that an exception or Ctrl-C anywhere still
unmounts every mount and stops every process, each by its own pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

MOUNT_TIMEOUT = 20.0


class PeerUnavailable(Exception):
    """This column cannot run here; the message says why and goes into the report, ``label``
    into the table's cells."""

    def __init__(self, message: str, label: str = "unavailable"):
        super().__init__(message)
        self.label = label


# --- processes and mounts ------------------------------------------------------------------------


class Registry:
    """Closers of everything started, run newest first.  A pid file lets the next run stop what
    a killed run (SIGKILL, no finally) left behind."""

    def __init__(self, pidfile: pathlib.Path):
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self._procs: dict[int, tuple[str, int | None]] = {}
        self._pidfile = pidfile
        self._logs: set[pathlib.Path] = set()

    def push(self, label: str, closer: Callable[[], None]) -> Callable[[], None]:
        entry = (label, closer)
        self._closers.append(entry)

        def close() -> None:
            if entry in self._closers:
                self._closers.remove(entry)
                closer()

        return close

    def spawn(
        self, cmd: list[str], *, log: pathlib.Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        # Each log starts afresh with the run and keeps every remount of it.
        mode = "ab" if log in self._logs else "wb"
        if log:
            self._logs.add(log)
        out = open(log, mode) if log else subprocess.DEVNULL
        try:
            # A session of its own: Ctrl-C in the terminal reaches only the benchmark, which
            # then stops each child in order (a FUSE daemon must outlive the mount's users).
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            if log:
                out.close()
        self._procs[proc.pid] = (" ".join(cmd), _start_time(proc.pid))
        self._save()
        return proc

    def reaped(self, proc: subprocess.Popen) -> None:
        self._procs.pop(proc.pid, None)
        self._save()

    def close_all(self) -> list[str]:
        errors = []
        while self._closers:
            label, closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # keep closing the others
                errors.append(f"{label}: {exc}")
        return errors

    def _save(self) -> None:
        self._pidfile.write_text(json.dumps(self._procs))

    def stop_leftovers(self, log: Callable[[str], None]) -> None:
        """Stop processes a killed earlier run recorded, if they are still those processes
        (same start time: a pid may have been reused since)."""
        try:
            old = json.loads(self._pidfile.read_text())
        except (OSError, ValueError):
            return
        for pid_s, (cmdline, started) in old.items():
            pid = int(pid_s)
            if _start_time(pid) != started:
                continue
            log(f"stopping pid {pid} left by an earlier run: {cmdline}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._save()


def _start_time(pid: int) -> int | None:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, counted after the command name, which may itself contain spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f]


def is_mounted(path: pathlib.Path) -> bool:
    return str(path) in mount_points()


def resolved(path: pathlib.Path) -> pathlib.Path:
    """The canonical path of ``path`` without ever stat-ing ``path`` itself: a mount point whose
    daemon is starting (or wedged) would block the caller."""
    return pathlib.Path(os.path.realpath(path.parent)) / path.name


def unmount(path: pathlib.Path) -> None:
    """fusermount3 -u, then a lazy unmount if something still holds the mount."""
    for cmd in (
        ["fusermount3", "-u", str(path)],
        ["fusermount3", "-u", "-z", str(path)],
        ["umount", "-l", str(path)],
    ):
        if not is_mounted(path):
            return
        if shutil.which(cmd[0]):
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if is_mounted(path):
        raise RuntimeError(f"could not unmount {path}")


# --- the columns ---------------------------------------------------------------------------------


class Peer:
    """One column: where the dataset is visible and how to bring that view up and down."""

    name = "?"
    fuse = False
    needs: dict[str, str] = {}  # executable -> Debian package

    def __init__(self, src: pathlib.Path, workdir: pathlib.Path, registry: Registry):
        self.src = src
        self.workdir = workdir
        self.registry = registry
        self.root = src
        self.failed: str | None = None  # set when the column died during the run

    def missing(self) -> dict[str, str]:
        return {exe: pkg for exe, pkg in self.needs.items() if not shutil.which(exe)}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def remount(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> str | None:
        """None while usable, else why not."""
        return self.failed

    def stats(self, reset: bool) -> dict | str | None:
        return None  # only bridgefs counts its requests

    def quiesce(self) -> None:
        """Wait until changes other columns made to the shared folder no longer reach this one."""

    def versions(self) -> str:
        return ""


class Native(Peer):
    name = "native"


class FusePeer(Peer):
    """A FUSE daemon run in the foreground, so its pid is ours to stop."""

    fuse = True
    # How to stop it: "unmount" (fusermount3 -u; the daemon then exits) or a signal number.
    stop_by: str | int = "unmount"

    def __init__(self, src, workdir, registry):
        super().__init__(src, workdir, registry)
        self.mountpoint = resolved(workdir / "mnt" / self.name)
        self.root = self.mountpoint
        self.proc: subprocess.Popen | None = None
        self._close: Callable[[], None] | None = None
        self.log = workdir / "logs" / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(exist_ok=True)
        if is_mounted(self.mountpoint):  # left by a killed earlier run
            unmount(self.mountpoint)
        self.proc = self.registry.spawn(self.command(), log=self.log, env=self.env())
        self._close = self.registry.push(f"{self.name} mount", self._stop_now)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_mounted(self.mountpoint):
            if self.proc.poll() is not None:
                self._close()
                raise PeerUnavailable(
                    f"{self.command()[0]} exited with {self.proc.returncode} "
                    f"before mounting: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self._close()
                raise PeerUnavailable(f"not mounted after {MOUNT_TIMEOUT:.0f} s: {self.log_tail()}")
            time.sleep(0.02)
        # Listed in mountinfo can still mean "INIT not answered yet": one stat, in a child
        # that a wedged daemon cannot hang, so the first timed run does not pay for it.
        try:
            subprocess.run(
                ["stat", "-c", "%i", str(self.mountpoint)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=MOUNT_TIMEOUT,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            self._close()
            raise PeerUnavailable(f"mounted but not answering ({exc}): {self.log_tail()}") from exc

    def env(self) -> dict[str, str] | None:
        return None

    def stop(self) -> None:
        if self._close:
            self._close()
            self._close = None

    def _stop_now(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            if self.stop_by == "unmount":
                with contextlib.suppress(RuntimeError):
                    unmount(self.mountpoint)
            else:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(self.stop_by)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        if is_mounted(self.mountpoint):
            unmount(self.mountpoint)
        stop_process(proc)
        self.registry.reaped(proc)

    def alive(self) -> str | None:
        if self.failed:
            return self.failed
        if self.proc is None or self.proc.poll() is not None:
            rc = None if self.proc is None else self.proc.returncode
            return f"daemon exited ({rc}): {self.log_tail()}"
        if not is_mounted(self.mountpoint):
            return "no longer mounted"
        return None

    def log_tail(self, lines: int = 4) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"


class Bindfs(FusePeer):
    name = "bindfs"
    needs = {"bindfs": "bindfs", "fusermount3": "fuse3"}

    def command(self) -> list[str]:
        return ["bindfs", "-f", str(self.src), str(self.mountpoint)]

    def versions(self) -> str:
        return _first_line(["bindfs", "--version"])


class Sshfs(FusePeer):
    """sshfs over loopback to a private sshd with throwaway keys, both started here."""

    name = "sshfs"
    needs = {
        "sshfs": "sshfs",
        "fusermount3": "fuse3",
        "/usr/sbin/sshd": "openssh-server",
        "ssh-keygen": "openssh-client",
        "ssh": "openssh-client",
    }

    def __init__(self, src, workdir, registry):
        super().__init__(src, workdir, registry)
        self.sshdir = workdir / "ssh"
        self.port = 0
        self.sshd: subprocess.Popen | None = None

    def start(self) -> None:
        if self.sshd is None or self.sshd.poll() is not None:
            self._start_sshd()
        super().start()

    def _start_sshd(self) -> None:
        d = self.sshdir
        d.mkdir(mode=0o700, exist_ok=True)
        for key in ("host_key", "client_key"):
            if not (d / key).exists():
                subprocess.run(
                    [
                        "ssh-keygen",
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        "bridgefs-bench",
                        "-f",
                        str(d / key),
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        sftp = "/usr/lib/openssh/sftp-server"
        (d / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
            "PermitRootLogin prohibit-password\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            # The workdir's permissions are not sshd's business here.
            "StrictModes no\nPidFile none\nLogLevel ERROR\n"
            f"Subsystem sftp {sftp if os.path.exists(sftp) else 'internal-sftp'}\n"
        )
        # sshd refuses to start without its privilege separation directory, which only the
        # system's ssh service would otherwise create.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        check = subprocess.run(
            ["/usr/sbin/sshd", "-t", "-f", str(d / "sshd_config")], capture_output=True, text=True
        )
        if check.returncode:
            raise PeerUnavailable(f"sshd rejects its config: {check.stderr.strip()}")
        self.port = _free_port()
        log = self.workdir / "logs" / "sshd.log"
        log.parent.mkdir(exist_ok=True)
        self.sshd = self.registry.spawn(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config"), "-p", str(self.port)],
            log=log,
        )
        sshd = self.sshd

        def close_sshd() -> None:
            stop_process(sshd)
            self.registry.reaped(sshd)

        self.registry.push("sshd", close_sshd)
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            if sshd.poll() is not None or time.monotonic() > deadline:
                raise PeerUnavailable(
                    f"sshd did not start on port {self.port}: "
                    f"{log.read_text(errors='replace').strip()[-300:]}"
                )
            time.sleep(0.05)

    def command(self) -> list[str]:
        opts = ",".join(
            [
                f"IdentityFile={self.sshdir / 'client_key'}",
                "StrictHostKeyChecking=no",
                "UserKnownHostsFile=/dev/null",
                f"port={self.port}",
                "BatchMode=yes",
                "LogLevel=ERROR",
            ]
        )
        # -F /dev/null: the user's ssh config (ControlMaster, Compression...) stays out of it.
        return [
            "sshfs",
            "-f",
            "-F",
            "/dev/null",
            "-o",
            opts,
            f"root@127.0.0.1:{self.src}",
            str(self.mountpoint),
        ]

    def versions(self) -> str:
        return _first_line(["sshfs", "--version"], "SSHFS") + "; " + _first_line(["ssh", "-V"])


class Bridgefs(FusePeer):
    name = "bridgefs"
    # bridgefs unmounts cleanly on SIGINT (its documented way to stop).
    stop_by = signal.SIGINT

    def __init__(self, src, workdir, registry):
        super().__init__(src, workdir, registry)
        self.exe = str(pathlib.Path(sys.executable).parent / "bridgefs")
        self._checked = False

    def missing(self) -> dict[str, str]:
        return {}

    def start(self) -> None:
        if not self._checked:
            self._check()
            self._checked = True
        super().start()

    def _check(self) -> None:
        if not os.access(self.exe, os.X_OK):
            raise PeerUnavailable(
                f"{self.exe} is not installed (pip install -e .)", "not installed"
            )
        probe = subprocess.run(
            [self.exe, "run", "--help"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode:
            last = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PeerUnavailable(
                f"`bridgefs run` is not yet runnable: {last[0]}", "not yet runnable"
            )

    def command(self) -> list[str]:
        return [self.exe, "run", str(self.src), str(self.mountpoint)]

    def env(self) -> dict[str, str]:
        # Never let the daemon write byte code or read a user's site-packages by accident.
        return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

    def stats(self, reset: bool) -> dict | str | None:
        cmd = [self.exe, "stats", str(self.mountpoint), "--reset" if reset else "--json"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return "stats unavailable: `bridgefs stats` timed out"
        if r.returncode:
            last = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exit {r.returncode}"]
            return f"stats unavailable: {last[0]}"
        if reset:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return "stats unavailable: `bridgefs stats --json` printed no JSON"

    def quiesce(self, quiet: float = 0.5, timeout: float = 60.0) -> None:
        # The other columns write into the same folder (W3's index, W6's file, W7's files): the
        # host changes they make stream to this client and are replayed in the mount.  Timing a
        # run while that is going on would time the replays too.
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            r = subprocess.run(
                [self.exe, "status", str(self.mountpoint), "--json"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            try:
                received = json.loads(r.stdout).get("received")
            except ValueError:
                return  # no status to go by: time it as it is
            if received != last:
                last, since = received, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)

    def versions(self) -> str:
        return _first_line([self.exe, "--version"])


PEERS: dict[str, type[Peer]] = {
    "native": Native,
    "bindfs": Bindfs,
    "sshfs": Sshfs,
    "bridgefs": Bridgefs,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_line(cmd: list[str], containing: str = "") -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (r.stdout + r.stderr).strip().splitlines()
    return next((line for line in lines if containing in line), "?")
