"""One QEMU guest for the tests: boot, talk to its agent, and make sure it never outlives them.

The guest has no network device at all.  Its virtio-serial ports are:

* ``org.bridgefs.0`` to ``.3``: bridgefs's transport, one per mount; QEMU dials the server's
  ``serial:`` socket for each (``reconnect=1``: again after a server restart);
* ``org.bridgefs.agent``: the tests' agent; QEMU listens and the tests dial.

QEMU is killed by pid when the tests end, when the test process dies (PR_SET_PDEATHSIG), and by a
watchdog process at a deadline in case both fail.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time

PORT_NAMES = [f"org.bridgefs.{i}" for i in range(4)]  # one mount per port at a time
AGENT_NAME = "org.bridgefs.agent"
WATCHDOG_SECONDS = 600


def qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64")


class AgentError(AssertionError):
    pass


def _tsc_khz_option() -> str:
    """The guest's TSC frequency, told rather than measured.  Under TCG the guest reads the
    host's TSC; a guest that calibrates it while the host is busy (its vCPU descheduled during
    the measurement) gets it wrong by a large factor, and then its clock and timers run many
    times too fast (a 120 s timeout in the guest expires in seconds)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return f" tsc_early_khz={round(float(line.split(':')[1]) * 1000)}"
    except (OSError, ValueError):
        pass
    return ""


class Guest:
    def __init__(
        self,
        images: dict[str, pathlib.Path],
        code: pathlib.Path,
        workdir: pathlib.Path,
        serial_socket: pathlib.Path,
        *,
        memory_mb: int = 1536,
        cpus: int = 2,
    ):
        self.workdir = workdir
        self.console = workdir / "console.log"
        self.agent_path = workdir / "agent.sock"
        self.serial_socket = serial_socket
        cmd = [
            qemu_binary() or "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-cpu",
            "max",
            "-smp",
            str(cpus),
            "-m",
            str(memory_mb),
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-kernel",
            str(images["kernel"]),
            "-initrd",
            str(images["initramfs"]),
            "-append",
            "console=ttyS0 panic=-1 quiet loglevel=4 tsc=reliable" + _tsc_khz_option(),
            "-chardev",
            f"file,id=con,path={self.console}",
            "-serial",
            "chardev:con",
            "-drive",
            f"file={images['rootfs']},if=virtio,format=raw,readonly=on",
            "-drive",
            f"file={code},if=virtio,format=raw,readonly=on",
            "-device",
            "virtio-serial-pci",
            "-chardev",
            f"socket,id=agent,path={self.agent_path},server=on,wait=off",
            "-device",
            f"virtserialport,chardev=agent,name={AGENT_NAME}",
        ]
        for i, name in enumerate(PORT_NAMES):
            cmd += [
                "-chardev",
                f"socket,id=bfs{i},path={serial_socket},reconnect=1",
                "-device",
                f"virtserialport,chardev=bfs{i},name={name}",
            ]
        self.started = time.monotonic()
        # Killed when this process dies.  setpriv sets that, not a preexec_fn: Python forks
        # for a preexec_fn, and in a process with gRPC threads the child can abort in gRPC's
        # fork handlers before it ever runs QEMU.
        self.proc = subprocess.Popen(
            ["setpriv", "--pdeathsig", "SIGKILL", *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "qemu.err", "w"),
        )
        # Kills QEMU by pid at the deadline even if this process is stopped without cleanup.
        self.watchdog = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WATCHDOG,
                str(self.proc.pid),
                str(os.getpid()),
                str(WATCHDOG_SECONDS),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[int, list] = {}
        self._buf = b""

    # --- agent ---------------------------------------------------------------------------------
    def connect_agent(self, timeout: float = 120) -> float:
        """Wait for the agent; returns the seconds from QEMU's start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AgentError(f"QEMU exited ({self.proc.returncode}): {self.log_tail()}")
            if self._sock is None and self.agent_path.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(self.agent_path))
                    self._sock = s
                except OSError:
                    s.close()
            if self._sock is not None:
                try:
                    answer = self.request({"op": "run", "sh": "true"}, timeout=2)
                    if answer.get("rc") == 0:
                        return time.monotonic() - self.started
                except (AgentError, TimeoutError, OSError):
                    pass
            time.sleep(0.1)
        raise AgentError(f"no agent after {timeout} s: {self.log_tail()}")

    def request(self, req: dict, timeout: float = 90) -> dict:
        assert self._sock is not None
        req = dict(req, id=next(self._ids))
        with self._lock:
            self._sock.sendall((json.dumps(req) + "\n").encode())
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for answer in self._drain():
                    self._waiting[answer.get("id")] = answer
                if req["id"] in self._waiting:
                    answer = self._waiting.pop(req["id"])
                    if "error" in answer:
                        raise AgentError(answer["error"])
                    return answer
            if time.monotonic() > deadline:
                raise TimeoutError(f"the guest did not answer {req} in {timeout} s")
            if self.proc.poll() is not None:
                raise AgentError(f"QEMU exited ({self.proc.returncode}): {self.log_tail()}")

    def _drain(self) -> list[dict]:
        self._sock.settimeout(0.05)
        try:
            data = self._sock.recv(1 << 20)
            if not data:
                raise AgentError("the agent's port closed")
            self._buf += data
        except (TimeoutError, BlockingIOError):
            pass
        answers = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            answers.append(json.loads(line))
        return answers

    def sh(
        self,
        script: str,
        *,
        timeout: float = 60,
        uid: int = 0,
        check: bool = True,
        env: dict | None = None,
    ) -> dict:
        """Run ``sh -c SCRIPT`` in the guest; with check, a nonzero exit fails the test."""
        answer = self.request(
            {"op": "run", "sh": script, "timeout": timeout, "uid": uid, "env": env or {}},
            timeout=timeout + 30,
        )
        if check and answer["rc"] != 0:
            raise AgentError(
                f"guest: {script!r} exited {answer['rc']}:\n{answer['out']}\n{answer['err']}"
            )
        return answer

    def spawn(self, name: str, script: str, uid: int = 0) -> int:
        return self.request({"op": "spawn", "name": name, "sh": script, "uid": uid})["pid"]

    def read(self, name: str) -> tuple[str, int | None]:
        answer = self.request({"op": "read", "name": name})
        return answer["out"], answer["rc"]

    def kill(self, name: str) -> int:
        return self.request({"op": "kill", "name": name})["rc"]

    def log_tail(self) -> str:
        try:
            return self.console.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    # --- end -----------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self._sock is not None and self.proc.poll() is None:
                try:
                    self.request({"op": "quit"}, timeout=5)
                except (AgentError, TimeoutError, OSError):
                    pass
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if self._sock is not None:
                self._sock.close()
            if self.watchdog.poll() is None:
                self.watchdog.kill()
            self.watchdog.wait()


def wait_for(predicate, timeout: float = 30, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {predicate}")
        time.sleep(interval)


# A process of its own: kills QEMU (by pid, checked to still be QEMU) once the test process is
# gone or the deadline passed.
_WATCHDOG = r"""
import os, signal, sys, time
qemu, parent, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + seconds
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
def is_qemu(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"qemu-system" in f.read().split(b"\0")[0]
    except OSError:
        return False
while alive(qemu) and is_qemu(qemu):
    if not alive(parent) or time.monotonic() > deadline:
        os.kill(qemu, signal.SIGKILL)
        break
    time.sleep(0.5)
"""
