#!/usr/bin/env python3
"""Build dist/hermes.pyz: hermes_min and pure-Python copies of its dependencies in one zipapp.

    python3 tools/build_pyz.py [--out dist/hermes.pyz] [--python-version 3.9]

The dependencies come from the package index through pip at build time: pure wheels
(`--only-binary=:all: --platform any --implementation py`) of requests, urllib3, idna,
certifi and charset-normalizer, resolved for the oldest supported Python, and PyYAML's
pure `lib/yaml/` from its sdist (PyYAML has no pure wheel; the archive has no libyaml, so
`yaml.__with_libyaml__` is False). Licence files are kept (each `*.dist-info/`, PyYAML's
LICENSE in `PyYAML-<version>.dist-info/`). No compiled extension and no `__pycache__` goes in.

What the archive changes, and why:
- `__main__.py` (generated) drops dependency modules a host `.pth` hook may already have
  imported, blocks optional extras requests/urllib3 would pick up from the host (chardet,
  simplejson, brotli, zstandard, PySocks), puts the archive first on sys.path, then runs
  hermes_min.cli.main. `python3 -S hermes.pyz` (no site-packages at all) is the hardened form.
- `certifi/core.py` is replaced: stock certifi copies cacert.pem out of a zip into a new temp
  file on every start (requests calls certifi.where() at import) and fails when /tmp is
  read-only. The replacement's where() returns the system CA file (OpenSSL's default, then the
  usual distro paths), which is also what hermes trusts; only on a host with none it copies
  certifi's bundle once into $XDG_CACHE_HOME/hermes (~/.cache/hermes) if that is writable, else
  it names a file that does not exist, and an HTTPS request with no ca_bundle set then fails.
- `hermes_min/_bundled.py` (VERSIONS, for `--version`) exists only in the archive.
- Every `.py` has a legacy `.pyc` beside it (zipimport never reads `__pycache__/`), compiled by
  the interpreter running this script, as unchecked-hash pycs (PEP 552: no source mtime, so
  they stay valid whatever the host's time zone). Other CPython minors ignore them (wrong magic
  number) and compile from source in memory, which is slower to start but works.

The archive is reproducible: sorted entries, fixed timestamps and permissions; the same pins,
building interpreter and zlib give the same bytes. Exit status: 0 built, 1 failed, 3 the
package index could not be reached.
"""

from __future__ import annotations

import argparse
import io
import os
import py_compile
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "hermes_min"

# Pinned: the newest releases that still support Python 3.9 (requests 2.34 / urllib3 2.8 need
# 3.10, PyYAML 6.0.4 needs 3.10). Bump together and rebuild; the build checks Requires-Python.
WHEELS = {
    "requests": "2.32.5",
    "urllib3": "2.6.3",
    "idna": "3.20",
    "certifi": "2026.10.19.post1",
    "charset-normalizer": "3.5.3",
}
PYYAML = "6.0.3"

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say; nothing reads it
SHEBANG = b"#!/usr/bin/env python3\n"
LICENCE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)
COMPILED = (".so", ".pyd", ".dylib", ".dll")
EXIT_FAILED, EXIT_NO_INDEX = 1, 3
# pip's words for "the index cannot be reached" (as opposed to, say, a pin it does not list).
_NETWORK = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No route to host",
    "Connection refused",
    "ConnectTimeoutError",
    "ProxyError",
    "Read timed out",
    "SSLError",
    "connection broken",
    "(from versions: none)",  # nothing listed for a pinned, published release: no index
)


class BuildError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


MAIN = '''\
"""hermes.pyz: the hermes command, run from this archive and never from host packages."""

import os
import sys

_ARCHIVE = os.path.dirname(os.path.abspath(__file__))
# Bundled here; a host .pth hook may have imported its own copies before we ran.
_OURS = ("hermes_min", "requests", "urllib3", "idna", "certifi", "charset_normalizer", "yaml")
# Optional extras requests/urllib3 would pick up from the host's site-packages; a clean
# install of hermes has none of them, so neither does the archive (None: "import fails").
_BLOCKED = ("chardet", "simplejson", "brotli", "brotlicffi", "zstandard", "socks")

for _name in list(sys.modules):
    if _name.partition(".")[0] in _OURS + _BLOCKED or _name == "_yaml":
        del sys.modules[_name]
for _name in _BLOCKED:
    sys.modules[_name] = None
sys.path[:] = [_ARCHIVE] + [p for p in sys.path if not p or os.path.abspath(p) != _ARCHIVE]

from hermes_min.cli import main  # noqa: E402

sys.exit(main())
'''

CERTIFI_CORE = '''\
"""certifi.where() for hermes.pyz: never a file copied out of the archive.

Stock certifi, imported from a zip, copies cacert.pem to a new temporary file on every start
(requests calls where() at import) and fails on a read-only /tmp. Here where() returns, in
order: the system CA file (OpenSSL's default, then the usual distro paths: where internal CAs
are installed, and what hermes trusts anyway); certifi's own cacert.pem when the archive was
unpacked; else a name that does not exist. In that last case hermes loads contents() into an
in-memory SSL context (hermes_min.connection.bundled_ca_context): nothing is written.
"""

import os
import pkgutil
import ssl

SYSTEM_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine (ca-certificates), Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL, CentOS
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # RHEL 7+
    "/etc/ssl/ca-bundle.pem",  # openSUSE, SLES
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",  # Alpine, macOS, OpenBSD
    "/usr/local/etc/ssl/cert.pem",  # FreeBSD
    "/usr/local/share/certs/ca-root-nss.crt",  # FreeBSD
)
MISSING = "/nonexistent/hermes.pyz/certifi-is-in-memory/cacert.pem"
_where = None


def contents():
    """certifi's bundle as text, read from the archive (nothing written)."""
    return pkgutil.get_data(__package__, "cacert.pem").decode("ascii")


def where():
    """A CA file that exists on disk, else MISSING (see the module docstring)."""
    global _where
    if _where is None:
        _where = _system_file() or _unpacked() or MISSING
    return _where


def _system_file():
    default = ssl.get_default_verify_paths().cafile
    for path in (default, *SYSTEM_FILES):
        if path and os.path.isfile(path):
            return path
    return None


def _unpacked():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cacert.pem")
    return path if os.path.isfile(path) else None
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist" / "hermes.pyz"), help="the archive")
    parser.add_argument(
        "--python-version",
        default="3.9",
        help="the oldest Python the dependencies must support (default 3.9)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        out = build(Path(args.out), args.python_version)
    except BuildError as error:
        print(f"build_pyz: {error}", file=sys.stderr)
        return error.code
    size = out.stat().st_size
    print(
        f"{out}: {size / 1024:.0f} KiB, .pyc for CPython "
        f"{sys.version_info[0]}.{sys.version_info[1]}, built in {time.monotonic() - started:.1f} s"
    )
    print(f"run it with any CPython >= {args.python_version}: python3 -S {out} --version")
    return 0


def build(out: Path, python_version: str) -> Path:
    """Download, unpack, patch, compile and zip; returns the archive's path."""
    with tempfile.TemporaryDirectory(prefix="hermes-pyz-") as tmp:
        work = Path(tmp)
        wheels, sdists, stage = work / "wheels", work / "sdist", work / "stage"
        download(wheels, sdists, python_version)
        stage.mkdir()
        versions = {}
        for name, version in WHEELS.items():
            versions[name] = unpack_wheel(
                find(wheels, name, version, ".whl"), stage, python_version
            )
        versions["PyYAML"] = unpack_pyyaml(
            find(sdists / "pyyaml", "pyyaml", PYYAML, ".tar.gz"), stage
        )
        add_notice(
            find(sdists / "requests", "requests", WHEELS["requests"], ".tar.gz"),
            stage / f"requests-{versions['requests']}.dist-info" / "licenses",
        )
        copy_package(stage)
        if not (stage / PACKAGE / "config_template.yaml").is_file():  # `hermes config init`
            raise BuildError(f"{PACKAGE}/config_template.yaml is missing from the checkout")
        (stage / "certifi" / "core.py").write_text(CERTIFI_CORE, encoding="utf-8")
        (stage / PACKAGE / "_bundled.py").write_text(bundled_module(versions), encoding="utf-8")
        (stage / "__main__.py").write_text(MAIN, encoding="utf-8")
        check_pure(stage)
        compile_tree(stage, out.name)
        write_zip(stage, out)
    return out


def download(wheels: Path, sdists: Path, python_version: str) -> None:
    """pip download the pure wheels and PyYAML's sdist, side by side."""
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    jobs = [
        pip
        + ["--only-binary=:all:", "--platform", "any", "--implementation", "py"]
        + ["--python-version", python_version, "-d", str(wheels)]
        + [f"{name}=={version}" for name, version in WHEELS.items()],
        # No pure wheel: the sdist. pip prepares its metadata, in an isolated build
        # environment whose own requirements (setuptools, Cython) come as wheels.
        pip
        + ["--only-binary=:all:", "--no-binary=pyyaml", "-d", str(sdists / "pyyaml")]
        + [f"PyYAML=={PYYAML}"],
        # requests' NOTICE (Apache-2.0 asks for it to travel along) is only in its sdist.
        pip
        + ["--only-binary=:all:", "--no-binary=requests", "-d", str(sdists / "requests")]
        + [f"requests=={WHEELS['requests']}"],
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd in jobs
    ]
    outputs = [proc.communicate()[0] for proc in procs]
    for proc, output in zip(procs, outputs):
        if proc.returncode == 0:
            continue
        tail = "\n".join(output.strip().splitlines()[-6:])
        if "No module named pip" in output:
            raise BuildError(f"{sys.executable} has no pip: {tail}")
        if any(marker.lower() in output.lower() for marker in _NETWORK):
            raise BuildError(f"cannot reach the package index with pip:\n{tail}", EXIT_NO_INDEX)
        raise BuildError(f"pip download failed:\n{tail}")


def find(folder: Path, name: str, version: str, suffix: str) -> Path:
    want = re.sub(r"[-_.]+", "_", name).lower() + f"-{version}"
    for path in sorted(folder.iterdir()):
        if path.name.lower().startswith(want) and path.name.endswith(suffix):
            return path
    raise BuildError(f"pip did not leave {name} {version} ({suffix}) in {folder}")


def unpack_wheel(wheel: Path, stage: Path, python_version: str) -> str:
    """Unpack a pure wheel (no RECORD: the archive changes files); returns its version."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = archive.read(metadata).decode("utf-8")
        check_python(wheel.name, meta, python_version)
        if not any(LICENCE.search(n.rsplit("/", 1)[-1]) for n in names if ".dist-info/" in n):
            raise BuildError(f"{wheel.name} has no licence file")
        for name in names:
            if name.endswith("/") or name.endswith(".dist-info/RECORD"):
                continue
            if "__pycache__/" in name or name.endswith((".pyc", ".pyo")):
                continue
            _write(stage / name, archive.read(name))
    return _field(meta, "Version")


def unpack_pyyaml(sdist: Path, stage: Path) -> str:
    """PyYAML's pure package (lib/yaml/*.py) and its licence; returns its version."""
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[-1]: m for m in archive.getmembers() if m.isfile()}
        meta = _read(archive, members["PKG-INFO"]).decode("utf-8")
        version = _field(meta, "Version")
        info = stage / f"PyYAML-{version}.dist-info"
        _write(info / "METADATA", meta.encode("utf-8"))
        _write(info / "LICENSE", _read(archive, members["LICENSE"]))
        sources = [n for n in members if n.startswith("lib/yaml/") and n.endswith(".py")]
        if "lib/yaml/__init__.py" not in sources:
            raise BuildError(f"{sdist.name} has no lib/yaml/__init__.py")
        for name in sources:
            _write(stage / name[len("lib/") :], _read(archive, members[name]))
    return version


def add_notice(sdist: Path, folder: Path) -> None:
    """The NOTICE file of an sdist, beside the licence its wheel ships."""
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.split("/", 1)[-1] == "NOTICE":
                _write(folder / "NOTICE", _read(archive, member))
                return
    raise BuildError(f"{sdist.name} has no NOTICE file")


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise BuildError(f"cannot read {member.name}")
    return handle.read()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _field(meta: str, name: str) -> str:
    match = re.search(rf"^{name}: *(.+)$", meta, re.MULTILINE)
    return match.group(1).strip() if match else ""


def check_python(what: str, meta: str, python_version: str) -> None:
    """Fail when Requires-Python has a lower bound above the target (>=X.Y clauses only)."""
    target = tuple(int(p) for p in python_version.split("."))
    for bound in re.findall(r">=\s*([\d.]+)", _field(meta, "Requires-Python")):
        if tuple(int(p) for p in bound.split(".") if p) > target:
            raise BuildError(f"{what} needs Python >={bound}, the target is {python_version}")


def copy_package(stage: Path) -> None:
    """hermes_min from this checkout: sources and data, no caches, never a stray _bundled.py."""
    source = ROOT / PACKAGE
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(ROOT)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        if path.suffix in (".pyc", ".pyo") + COMPILED or rel == Path(PACKAGE, "_bundled.py"):
            continue
        _write(stage / rel, path.read_bytes())


def bundled_module(versions: dict[str, str]) -> str:
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    lines = [
        '"""Written by tools/build_pyz.py into hermes.pyz only: what the archive bundles."""',
        "",
        "VERSIONS = {",
        *(f"    {name!r}: {version!r}," for name, version in versions.items()),
        "}",
        f"BYTECODE_FOR = {minor!r}  # the CPython minor whose .pyc files the archive holds",
        "",
    ]
    return "\n".join(lines)


def check_pure(stage: Path) -> None:
    for path in stage.rglob("*"):
        if path.suffix in COMPILED or ".so." in path.name:
            raise BuildError(f"compiled extension in the archive: {path.relative_to(stage)}")
        if path.name == "__pycache__":
            shutil.rmtree(path)


def compile_tree(stage: Path, archive_name: str) -> None:
    """A legacy unchecked-hash .pyc beside every .py, for this interpreter's minor version."""
    for source in sorted(stage.rglob("*.py")):
        rel = source.relative_to(stage).as_posix()
        try:
            py_compile.compile(
                str(source),
                cfile=str(source) + "c",
                dfile=f"{archive_name}/{rel}",
                doraise=True,
                optimize=0,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except py_compile.PyCompileError as error:
            raise BuildError(f"cannot compile {rel}: {error.msg}") from None


def write_zip(stage: Path, out: Path) -> None:
    """The zipapp: shebang, then every file sorted, fixed times and modes; atomic replace."""
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(files, key=lambda p: p.relative_to(stage).as_posix()):
            info = zipfile.ZipInfo(path.relative_to(stage).as_posix(), FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the building OS
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(buffer.getvalue())
    os.chmod(partial, 0o755)
    os.replace(partial, out)


if __name__ == "__main__":
    sys.exit(main())
