"""A client's name reaches the host only as a checked ``Name``, through ``bridgefs.server.at``.

Three halves of one proof: no other server module can hand a system call a name relative to a
directory fd (read from the source), every function of ``at`` refuses a name that is not a
``Name`` before touching the host (run), and mypy refuses such a call before it runs.  That the
service still answers as before is the rest of tests/server (test_confinement.py for names).
"""

from __future__ import annotations

import ast
import errno
import inspect
import os
import pathlib
import subprocess
import sys

import pytest

import bridgefs.server
from bridgefs.server import at, syscalls
from bridgefs.server.confine import Name, Refused, check_name

SERVER = pathlib.Path(bridgefs.server.__file__).parent
DIR_FD_KEYWORDS = {"dir_fd", "src_dir_fd", "dst_dir_fd"}
# Every os function that takes a path: outside at.py the server hands them only the magic link of
# an fd it holds (confine.proc_path), or an fd, never a name.
OS_PATH_FUNCTIONS = {
    "open",
    "stat",
    "lstat",
    "access",
    "chmod",
    "lchmod",
    "chown",
    "lchown",
    "link",
    "symlink",
    "readlink",
    "unlink",
    "remove",
    "rmdir",
    "mkdir",
    "makedirs",
    "mknod",
    "mkfifo",
    "rename",
    "renames",
    "replace",
    "truncate",
    "utime",
    "getxattr",
    "setxattr",
    "listxattr",
    "removexattr",
    "scandir",
    "listdir",
    "walk",
    "fwalk",
    "statvfs",
    "chdir",
    "chroot",
    "pathconf",
}
# Modules that take host paths from the host's own configuration, never from a client: the
# share's root (shares.py) and the server's sockets (main.py).
HOST_PATH_MODULES = {"shares.py", "main.py"}
# The one module that breaks the confinement on purpose, for the test that shows the sandbox
# holds without it (tests/security/test_sandbox.py); off unless a test's environment asks.
BROKEN_ON_PURPOSE = {"testhook.py"}
# Arguments that are fds the server holds (an O_PATH or open fd), named as the modules name them.
FD_ARGUMENTS = {"self.share.root_fd", "self.fd"}


def _modules():
    for path in sorted(SERVER.glob("*.py")):
        yield path.name, ast.parse(path.read_text(), str(path))


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _os_function(call: ast.Call) -> str | None:
    func = call.func
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "os"
    ):
        return func.attr
    return None


def _is_proc_path(arg: ast.expr) -> bool:
    return (
        isinstance(arg, ast.Call)
        and isinstance(arg.func, ast.Attribute | ast.Name)
        and (getattr(arg.func, "attr", None) or getattr(arg.func, "id", None)) == "proc_path"
    )


def _where(name: str, call: ast.Call) -> str:
    return f"{name}:{call.lineno}: {ast.unparse(call)[:100]}"


def test_only_at_passes_a_directory_fd_to_a_system_call():
    found = [
        _where(name, call)
        for name, tree in _modules()
        for call in _calls(tree)
        if name != "at.py" and DIR_FD_KEYWORDS & {k.arg for k in call.keywords}
    ]
    assert not found, "resolve names through bridgefs.server.at instead:\n" + "\n".join(found)


def test_only_at_calls_renameat2_and_only_syscalls_and_at_use_ctypes():
    found = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and name not in ("at.py", "syscalls.py")
                and "renameat2"
                in {getattr(node.func, "attr", None), getattr(node.func, "id", None)}
            ):
                found.append(_where(name, node))
            if isinstance(node, ast.Import | ast.ImportFrom) and name != "syscalls.py":
                modules = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                if any(m.split(".")[0] == "ctypes" for m in modules):
                    found.append(f"{name}:{node.lineno}: imports ctypes")
    assert not found, "\n".join(found)


def test_other_modules_give_path_functions_only_fds_and_magic_links():
    found = []
    for name, tree in _modules():
        if name == "at.py" or name in HOST_PATH_MODULES | BROKEN_ON_PURPOSE:
            continue
        for call in _calls(tree):
            if isinstance(call.func, ast.Name) and call.func.id == "open":
                # The builtin: only for files of the server process itself, named in the source.
                if not (call.args and isinstance(call.args[0], ast.Constant)):
                    found.append(_where(name, call))
                continue
            fn = _os_function(call)
            if fn not in OS_PATH_FUNCTIONS or not call.args:
                continue
            first = call.args[0]
            if _is_proc_path(first) or ast.unparse(first) in FD_ARGUMENTS:
                continue
            found.append(_where(name, call))
    assert not found, "a path function given something other than an fd:\n" + "\n".join(found)


def test_a_name_exists_only_checked():
    assert check_name(b"ok") == b"ok" and type(check_name(b"ok")) is Name
    assert check_name(Name(b"ok")) == b"ok"
    assert Name(b"n" * 255)
    for bad, err in [
        (b"", errno.EINVAL),
        (b".", errno.EINVAL),
        (b"..", errno.EINVAL),
        (b"a/b", errno.EINVAL),
        (b"/", errno.EINVAL),
        (b"a\0b", errno.EINVAL),
        (b"n" * 256, errno.ENAMETOOLONG),
        ("str", errno.EINVAL),
    ]:
        for make in (Name, check_name):
            with pytest.raises(Refused) as info:
                make(bad)
            assert info.value.errno == err, bad
    with pytest.raises(TypeError):
        type("Unchecked", (Name,), {})  # a subclass could skip the checks
    # What is made from a Name is plain bytes: a path joined from names is no name.
    name = Name(b"ab")
    assert all(
        type(v) is bytes
        for v in (
            name[:1],
            name + b"/x",
            b"/".join([name, name]),
            name.replace(b"a", b"."),
            bytes(name),
        )
    )


@pytest.fixture
def where(tmp_path):
    (tmp_path / "file").write_bytes(b"data")
    (tmp_path / "dir").mkdir()
    os.symlink("file", tmp_path / "link")
    dirfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    nodefd = os.open(tmp_path / "file", os.O_PATH)
    try:
        yield tmp_path, dirfd, nodefd
    finally:
        os.close(nodefd)
        os.close(dirfd)


def _calls_of_at(dirfd: int, nodefd: int, name):
    """Each function of ``at`` that takes a name, called with ``name`` in every name's place."""
    return {
        "lookup": lambda: at.lookup(dirfd, name),
        "create": lambda: at.create(dirfd, name, os.O_RDWR, 0o644),
        "stat": lambda: at.stat(dirfd, name),
        "stat_below": lambda: at.stat_below(dirfd, [name]),
        "mknod": lambda: at.mknod(dirfd, name, 0o10644, 0),
        "mkdir": lambda: at.mkdir(dirfd, name, 0o755),
        "symlink": lambda: at.symlink(b"target", dirfd, name),
        "link": lambda: at.link(nodefd, dirfd, name),
        "unlink": lambda: at.unlink(dirfd, name),
        "rmdir": lambda: at.rmdir(dirfd, name),
        "rename": lambda: at.rename(dirfd, name, dirfd, Name(b"renamed"), 0),
        "rename to": lambda: at.rename(dirfd, Name(b"file"), dirfd, name, 0),
        "rename exchange": lambda: at.rename(
            dirfd, name, dirfd, Name(b"dir"), syscalls.RENAME_EXCHANGE
        ),
    }


def test_every_function_of_at_taking_a_name_is_tried_below(where):
    takes_names = {
        fn
        for fn, f in inspect.getmembers(at, inspect.isfunction)
        if f.__module__ == at.__name__
        and not fn.startswith("_")
        and any("Name" in str(p.annotation) for p in inspect.signature(f).parameters.values())
    }
    tried = {call.split()[0] for call in _calls_of_at(*where[1:], Name(b"x"))}
    assert takes_names == tried


@pytest.mark.parametrize(
    "raw", [b"file", b"new", "file", b"../file", bytearray(b"file"), memoryview(b"file")], ids=repr
)
def test_every_function_of_at_refuses_an_unchecked_name(where, raw):
    root, dirfd, nodefd = where
    before = sorted((p.name, p.lstat()) for p in root.iterdir())
    for what, call in _calls_of_at(dirfd, nodefd, raw).items():
        with pytest.raises(TypeError, match="unchecked name"):
            call()
        assert sorted((p.name, p.lstat()) for p in root.iterdir()) == before, what


def test_with_names_at_acts_as_the_system_calls(where):
    root, dirfd, nodefd = where
    n = Name
    assert os.fstat(fd := at.lookup(dirfd, n(b"link"))).st_mode & 0o170000 == 0o120000
    os.close(fd)  # the symlink itself, not its target
    assert at.readlink_node(at_fd := at.lookup(dirfd, n(b"link"))) == b"file"
    os.close(at_fd)
    fd, created = at.create(dirfd, n(b"made"), os.O_RDWR, 0o600)
    os.close(fd)
    assert created and at.stat(dirfd, n(b"made")).st_mode & 0o777 == 0o600
    at.mkdir(dirfd, n(b"sub"), 0o755)
    at.symlink(b"../../x", dirfd, n(b"sym"))
    at.link(nodefd, dirfd, n(b"hard"))
    at.rename(dirfd, n(b"hard"), dirfd, n(b"moved"), 0)
    at.rename(dirfd, n(b"moved"), dirfd, n(b"made"), syscalls.RENAME_EXCHANGE)
    assert (root / "made").read_bytes() == b"data"
    assert at.stat_below(dirfd, [n(b"dir")]).st_ino == (root / "dir").stat().st_ino
    assert at.stat_below(dirfd, []).st_ino == root.stat().st_ino
    sub = os.open(root / "dir", os.O_PATH)
    try:
        assert at.stat_parent(sub).st_ino == root.stat().st_ino
    finally:
        os.close(sub)
    at.unlink(dirfd, n(b"moved"))
    at.rmdir(dirfd, n(b"sub"))
    with pytest.raises(FileExistsError):
        at.rename(dirfd, n(b"made"), dirfd, n(b"sym"), syscalls.RENAME_NOREPLACE)
    assert sorted(p.name for p in root.iterdir()) == ["dir", "file", "link", "made", "sym"]
    assert os.readlink(root / "sym") == "../../x"


def test_mypy_refuses_an_unchecked_name(tmp_path):
    """The types say it before a test runs: a raw name handed to ``at`` does not type-check."""
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "from bridgefs.server import at, confine\n"
        "def good(dirfd: int, name: bytes) -> None:\n"
        "    at.unlink(dirfd, confine.check_name(name))\n"
        "def bad(dirfd: int, name: bytes) -> None:\n"
        "    at.unlink(dirfd, name)\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            str(snippet),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(SERVER.parent.parent)},
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "snippet.py:5:" in errors[0] and '"Name"' in errors[0], (
        result.stdout + result.stderr
    )


def test_the_server_package_passes_mypy_strict(tmp_path):
    """So the Name annotations hold everywhere: a module left untyped would take any name."""
    pytest.importorskip("mypy")
    root = SERVER.parent.parent.parent
    if not (root / "pyproject.toml").is_file():
        pytest.skip("not run from a source tree")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(SERVER),
        ],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert result.returncode == 0, result.stdout + result.stderr
