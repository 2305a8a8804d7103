"""Run file operations as whoever runs this, and print what each gave, as JSON.

    setpriv --reuid U --regid G --clear-groups python3 actor.py ROOT '[["create", "f", 420], ...]'

Every operation is relative to ROOT and answers ["ok", value] or ["err", "EACCES"] (the errno's
name), so the same list of operations run on a native directory and on a mount can be compared
result by result.  It imports nothing from bridgefs: it runs as users who may not reach the
project's environment, under any Python 3.
"""

import errno
import json
import os
import stat
import sys


def _stat(path):
    st = os.lstat(path)
    return [st.st_uid, st.st_gid, oct(st.st_mode)]


def _create(path, mode):
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))


def _write(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        return os.write(fd, data.encode())
    finally:
        os.close(fd)


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode()


OPS = {
    "stat": _stat,
    "create": _create,
    "write": _write,
    "read": _read,
    "mkdir": os.mkdir,
    "rmdir": os.rmdir,
    "unlink": os.unlink,
    "rename": os.rename,
    "chmod": os.chmod,
    "chown": os.chown,
    "lchown": os.lchown,
    "symlink": os.symlink,
    "mkfifo": os.mkfifo,
    "mknod_chr": lambda path, mode, major, minor: os.mknod(
        path, stat.S_IFCHR | mode, os.makedev(major, minor)
    ),
    "list": lambda path: sorted(os.listdir(path)),
    "truncate": os.truncate,
}


def main():
    root, ops = sys.argv[1], json.loads(sys.argv[2])
    os.umask(0o022)
    os.chdir(root)
    out = []
    for name, *args in ops:
        try:
            value = OPS[name](*args)
            out.append(["ok", value])
        except OSError as exc:
            out.append(["err", errno.errorcode.get(exc.errno, str(exc.errno))])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
