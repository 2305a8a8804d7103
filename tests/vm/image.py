"""Builds what a real Linux guest boots from, out of Debian packages, and caches it.

* kernel: Debian's ``linux-image`` (the one ``linux-image-amd64`` names), fetched with
  ``apt-get download``; its vmlinuz is unpacked to the ELF ``vmlinux``, which QEMU boots
  through PVH (no decompression under an emulated CPU);
* initramfs: busybox-static and the few modules that reach the root disk and FUSE;
* root image (ext4, mounted read-only): busybox, this machine's Python and the project's venv
  at their own paths (so the venv works unchanged), the shared libraries they link, fusermount3
  and inotifywait;
* code image (ext4, built at every run, small): this checkout's ``src/`` (bound over the path
  the venv imports bridgefs from), ``tests/vm/guest/`` and README.md.

The cache is keyed by a hash of everything that went into an image: a changed venv, kernel or
recipe (this file) builds a new one.  ``python tests/vm/image.py`` builds it by hand.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
GUEST = pathlib.Path(__file__).resolve().parent / "guest"
CACHE = pathlib.Path(os.environ.get("BRIDGEFS_VM_CACHE", "/var/cache/bridgefs-vm"))
KERNEL_META = "linux-image-amd64"
# Loaded in this order by the initramfs: virtio transport, disks, serial ports, ext4, FUSE.
MODULES = [
    "virtio",
    "virtio_ring",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "crc16",
    "crc32c_generic",
    "libcrc32c",
    "mbcache",
    "jbd2",
    "ext4",
    "fuse",
]
TOOLS = ["/usr/bin/fusermount3", "/usr/bin/inotifywait"]
GUEST_USER = (1000, "vmuser")


class ImageError(RuntimeError):
    pass


def _run(cmd: list[str], **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise ImageError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _publish(tmp: pathlib.Path, final: pathlib.Path) -> pathlib.Path:
    """Move a finished build into place: a run killed halfway leaves no image that looks whole."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()
    return final


# --- kernel --------------------------------------------------------------------------------------
def _kernel_package() -> str:
    def depends() -> list[str]:
        out = subprocess.run(
            ["apt-cache", "depends", KERNEL_META], capture_output=True, text=True
        ).stdout
        return re.findall(r"Depends: (linux-image-\S+)", out)

    names = depends()
    if not names:
        _run(["apt-get", "update", "-qq"])
        names = depends()
    if not names:
        raise ImageError(f"apt knows no {KERNEL_META}")
    return names[0]


def _vmlinux_from(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside a bzImage (Debian compresses it with xz)."""
    start = vmlinuz.find(b"\xfd7zXZ\x00")
    while start >= 0:
        try:
            elf = lzma.LZMADecompressor().decompress(vmlinuz[start:])
            if elf[:4] == b"\x7fELF":
                return elf
        except lzma.LZMAError:
            pass
        start = vmlinuz.find(b"\xfd7zXZ\x00", start + 1)
    raise ImageError("no xz-compressed ELF kernel in vmlinuz")


def kernel() -> pathlib.Path:
    """cache/kernel-VERSION/ with vmlinux and lib/modules/VERSION/; fetched once."""
    existing = sorted(CACHE.glob("kernel-*/vmlinux"))
    if existing and not os.environ.get("BRIDGEFS_VM_NEW_KERNEL"):
        return existing[-1].parent
    package = _kernel_package()
    final = CACHE / f"kernel-{package.removeprefix('linux-image-')}"
    if (final / "vmlinux").exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kernel-", dir=CACHE))
    try:
        _run(["apt-get", "download", package], cwd=tmp)
        deb = next(tmp.glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(tmp / "x")])
        vmlinuz = next((tmp / "x" / "boot").glob("vmlinuz-*"))
        (tmp / "vmlinux").write_bytes(_vmlinux_from(vmlinuz.read_bytes()))
        shutil.move(str(tmp / "x" / "lib" / "modules"), str(tmp / "modules"))
        shutil.rmtree(tmp / "x")
        deb.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _publish(tmp, final)


def _module_files(kdir: pathlib.Path) -> list[pathlib.Path]:
    """MODULES and what they depend on (from each module's own .modinfo: the package has no
    modules.dep, depmod makes it at install), each after its dependencies."""
    found = {p.name[:-3].replace("-", "_"): p for p in (kdir / "modules").rglob("*.ko")}
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        if name in order or name in path:
            return
        if name not in found:
            raise ImageError(f"the kernel has no module {name}")
        m = re.search(rb"\0depends=([^\0]*)\0", b"\0" + found[name].read_bytes())
        for dep in m.group(1).decode().split(",") if m and m.group(1) else []:
            visit(dep.replace("-", "_"), path + (name,))
        order.append(name)

    for name in MODULES:
        visit(name)
    return [found[m] for m in order]


# --- cpio (newc) for the initramfs ---------------------------------------------------------------
def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        out.write(b"\0" * (-(110 + len(raw)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
    return out.getvalue()


def initramfs(kdir: pathlib.Path) -> pathlib.Path:
    init = (GUEST / "initramfs-init").read_bytes()
    modules = _module_files(kdir)
    final = CACHE / f"initramfs-{_digest(kdir.name, init, [p.name for p in modules])}.cpio"
    if final.exists():
        return final
    busybox = pathlib.Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    entries = [
        ("bin", 0o40755, b""),
        ("dev", 0o40755, b""),
        ("proc", 0o40755, b""),
        ("sys", 0o40755, b""),
        ("newroot", 0o40755, b""),
        ("modules", 0o40755, b""),
        ("bin/busybox", 0o100755, busybox),
        ("init", 0o100755, init),
    ]
    order = []
    for i, path in enumerate(modules):
        name = f"modules/{i:02d}-{path.name}"
        entries.append((name, 0o100644, path.read_bytes()))
        order.append(name)
    entries.append(("modules/order", 0o100644, ("\n".join(order) + "\n").encode()))
    tmp = final.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(_cpio(entries))
    return _publish(tmp, final)


# --- root image ----------------------------------------------------------------------------------
def _venv() -> pathlib.Path:
    return pathlib.Path(sys.prefix)


def _python_home() -> pathlib.Path:
    return pathlib.Path(sys.base_prefix)


def editable_src() -> pathlib.Path:
    """Where the venv imports bridgefs from (its editable install's path)."""
    for pth in _venv().glob("lib/python*/site-packages/__editable__*bridgefs*.pth"):
        line = pth.read_text().strip().splitlines()[0]
        if line.startswith("/"):
            return pathlib.Path(line)
    return REPO / "src"


_SKIP_PYTHON = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}


def _ignore_python(directory: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n.startswith("config-")}
    if pathlib.Path(directory).name.startswith("python3"):
        skip |= _SKIP_PYTHON & set(names)
    return skip


def _elf_files(root: pathlib.Path) -> list[pathlib.Path]:
    found = []
    for path in root.rglob("*"):
        if (
            path.is_file()
            and not path.is_symlink()
            and (path.suffix == ".so" or ".so." in path.name or os.access(path, os.X_OK))
        ):
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def _copy_libraries(stage: pathlib.Path, elves: list[pathlib.Path], host_paths: dict) -> None:
    """Each shared library the files need, at the path the loader finds it on this machine."""
    needed: set[str] = set()
    for elf in elves:
        proc = subprocess.run(["ldd", str(elf)], capture_output=True, text=True)
        for m in re.finditer(r"(?:=> )?(/\S+) \(0x", proc.stdout):
            needed.add(m.group(1))
    for lib in sorted(needed):
        if any(lib.startswith(str(p) + "/") for p in host_paths):
            continue  # inside a tree that is copied whole
        real = os.path.realpath(lib)
        for path in {
            lib,
            real,
            os.path.join(os.path.realpath(os.path.dirname(lib)), os.path.basename(lib)),
        }:
            dest = stage / path.lstrip("/")
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(real, dest)


def _merged_usr(stage: pathlib.Path) -> None:
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    for link, target in (
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ):
        os.symlink(target, stage / link)


def _root_key(kdir: pathlib.Path) -> str:
    venv = _venv()
    site = sorted(p.name for p in venv.glob("lib/python*/site-packages/*"))
    tools = [(t, os.stat(t).st_size) for t in TOOLS]
    return _digest(
        pathlib.Path(__file__).read_bytes(),
        str(venv),
        str(_python_home()),
        sys.version,
        site,
        (venv / "pyvenv.cfg").read_text(),
        tools,
        str(editable_src()),
    )


def rootfs(kdir: pathlib.Path) -> pathlib.Path:
    final = CACHE / f"rootfs-{_root_key(kdir)}.ext4"
    if final.exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    stage = pathlib.Path(tempfile.mkdtemp(prefix="rootfs-stage-", dir=CACHE))
    try:
        _merged_usr(stage)
        busybox = shutil.which("busybox") or "/bin/busybox"
        shutil.copy2(busybox, stage / "usr/bin/busybox")
        applets = _run([busybox, "--list-full"]).split()
        for applet in applets:
            dest = stage / "usr" / applet.removeprefix("usr/").lstrip("/")
            if applet.startswith(("bin/", "sbin/")):
                dest = stage / "usr" / applet
            if not dest.exists() and not dest.is_symlink():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.symlink("/usr/bin/busybox", dest)
        for tool in TOOLS:
            dest = stage / tool.lstrip("/")
            if dest.is_symlink():
                dest.unlink()
            shutil.copy2(tool, dest)  # keeps fusermount3's setuid bit
        home, venv = _python_home(), _venv()
        shutil.copytree(home, stage / str(home).lstrip("/"), symlinks=True, ignore=_ignore_python)
        shutil.copytree(
            venv,
            stage / str(venv).lstrip("/"),
            symlinks=True,
            ignore=shutil.ignore_patterns("grpc_tools", "pip", "node_modules"),
        )
        _copy_libraries(
            stage,
            _elf_files(stage / str(home).lstrip("/"))
            + _elf_files(stage / str(venv).lstrip("/"))
            + [stage / t.lstrip("/") for t in TOOLS],
            {home, venv},
        )
        (stage / str(editable_src()).lstrip("/")).mkdir(parents=True, exist_ok=True)
        for d in ("proc", "sys", "dev", "run", "tmp", "mnt", "code", "etc", "root"):
            (stage / d).mkdir(exist_ok=True)
        uid, user = GUEST_USER
        # No home folder for the user, and no /etc/mtab: a minimal guest has neither.
        (stage / "etc/passwd").write_text(
            f"root:x:0:0:root:/root:/bin/sh\n{user}:x:{uid}:{uid}::/nonexistent:/bin/sh\n"
        )
        (stage / "etc/group").write_text(f"root:x:0:\n{user}:x:{uid}:\n")
        # Leads nowhere after a boot (as good as no mtab); a test makes it lead to the mount
        # table, as systems do for /etc/mtab, since fusermount3 needs it to unmount for a user.
        os.symlink("/run/mtab", stage / "etc/mtab")
        size = sum(p.lstat().st_size for p in stage.rglob("*")) * 13 // 10 + (96 << 20)
        tmp = final.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            f.truncate(size)
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-O",
                "^metadata_csum,^has_journal",
                "-L",
                "bridgefs-root",
                "-d",
                str(stage),
                str(tmp),
            ]
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return _publish(tmp, final)


# --- code image ----------------------------------------------------------------------------------
def code_image(dest: pathlib.Path) -> pathlib.Path:
    """This checkout's code for the guest, built each run (a few MiB)."""
    stage = pathlib.Path(tempfile.mkdtemp(prefix="code-stage-", dir=dest.parent))
    try:
        shutil.copytree(
            REPO / "src", stage / "src", symlinks=True, ignore=shutil.ignore_patterns("*.egg-info")
        )
        shutil.copytree(GUEST, stage / "guest", symlinks=True)
        shutil.copy2(REPO / "README.md", stage / "README.md")
        (stage / "layout").write_text(f"SRC={editable_src()}\nVENV={_venv()}\n")
        size = sum(p.lstat().st_size for p in stage.rglob("*")) * 2 + (16 << 20)
        with open(dest, "wb") as f:
            f.truncate(size)
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-O",
                "^metadata_csum,^has_journal",
                "-L",
                "bridgefs-code",
                "-d",
                str(stage),
                str(dest),
            ]
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest


def build() -> dict[str, pathlib.Path]:
    kdir = kernel()
    return {"kernel": kdir / "vmlinux", "initramfs": initramfs(kdir), "rootfs": rootfs(kdir)}


if __name__ == "__main__":
    for name, path in build().items():
        print(f"{name:10} {path}")
