"""Prints each inotify event under a folder as `TIME MASK NAME` (TIME from time.time()), so the
host can put a latency on each of its changes.  Runs in the guest: no packages beyond Python."""

import ctypes
import os
import struct
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
MASK = 0x00000FFF  # every event but the open/close-nowrite noise is kept; the host filters
if libc.inotify_add_watch(fd, sys.argv[1].encode(), MASK) < 0:
    raise SystemExit(f"inotify_add_watch: {os.strerror(ctypes.get_errno())}")
print("ready", flush=True)
while True:
    data = os.read(fd, 65536)
    now = time.time()
    offset = 0
    while offset < len(data):
        _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
        name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
        print(f"{now:.6f} {mask:#x} {name}", flush=True)
        offset += 16 + length
