"""The guest's end of the tests: runs what the host asks, over the virtio-serial port named
org.bridgefs.agent, one JSON object per line each way.

    {"id": 1, "op": "run", "sh": "...", "timeout": 60, "uid": 1000}
                                                                  -> {"id": 1, "rc", "out", "err"}
    {"id": 2, "op": "spawn", "sh": "...", "name": "w"}              -> {"id": 2, "pid"}
    {"id": 3, "op": "read", "name": "w"}                              -> {"id": 3, "out", "rc"}
    {"id": 4, "op": "kill", "name": "w"}                              -> {"id": 4, "rc"}
"""

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

NAME = "org.bridgefs.agent"


def port_device() -> str:
    for name_file in glob.glob("/sys/class/virtio-ports/*/name"):
        with open(name_file) as f:
            if f.read().strip() == NAME:
                return "/dev/" + os.path.basename(os.path.dirname(name_file))
    raise SystemExit(f"agent: no port {NAME}")


fd = os.open(port_device(), os.O_RDWR)
write_lock = threading.Lock()
jobs: dict[str, subprocess.Popen] = {}


def reply(obj) -> None:
    data = (json.dumps(obj) + "\n").encode()
    with write_lock:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def _demote(uid):
    def run():
        os.setgid(uid)
        os.setgroups([])
        os.setuid(uid)

    return run if uid else None


def handle(req) -> None:
    op = req.get("op")
    answer = {"id": req.get("id")}
    try:
        env = dict(os.environ, **req.get("env", {}))
        cwd = req.get("cwd", "/")
        uid = req.get("uid", 0)
        if op == "run":
            start = time.monotonic()
            try:
                proc = subprocess.run(
                    ["/bin/sh", "-c", req["sh"]],
                    capture_output=True,
                    text=True,
                    timeout=req.get("timeout", 60),
                    env=env,
                    cwd=cwd,
                    preexec_fn=_demote(uid),
                    stdin=subprocess.DEVNULL,
                )
                answer.update(rc=proc.returncode, out=proc.stdout, err=proc.stderr)
            except subprocess.TimeoutExpired as exc:
                answer.update(
                    rc=-1,
                    out=(exc.stdout or b"").decode(errors="replace")
                    if isinstance(exc.stdout, bytes)
                    else (exc.stdout or ""),
                    err=f"timed out after {req.get('timeout', 60)} s",
                )
            answer["secs"] = time.monotonic() - start
        elif op == "spawn":
            name = req["name"]
            out = open(f"/tmp/job-{name}.out", "w")
            jobs[name] = subprocess.Popen(
                ["/bin/sh", "-c", req["sh"]],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                preexec_fn=_demote(uid),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            out.close()
            answer["pid"] = jobs[name].pid
        elif op == "read":
            name = req["name"]
            with open(f"/tmp/job-{name}.out") as f:
                answer["out"] = f.read()
            answer["rc"] = jobs[name].poll()
        elif op == "kill":
            proc = jobs.pop(req["name"])
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            answer["rc"] = proc.wait()
        elif op == "clock":
            answer["time"] = time.time()
        elif op == "quit":
            reply(answer)
            os._exit(0)
        else:
            answer["error"] = f"unknown op {op!r}"
    except Exception as exc:  # the host must hear of every failure, not wait for an answer
        answer["error"] = f"{type(exc).__name__}: {exc}"
    reply(answer)


def main() -> None:
    buf = b""
    print("agent: ready", flush=True)
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:  # the host has not connected (or went away): wait for it
            buf = b""
            time.sleep(0.05)
            continue
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
