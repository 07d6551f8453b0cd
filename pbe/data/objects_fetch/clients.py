"""Archives fetched with each registry's ordinary client into DIR/cache, verified, and unpacked.

- npm: ``npm pack NAME@VERSION`` (the archive's sha512 is checked against the integrity npm reports);
- PyPI: ``pip download --no-deps --only-binary=:all: NAME==VERSION`` (pip checks the index's hash);
- Debian: ``apt-get download NAME`` (the archive's SHA256 is checked against ``apt-cache show``), unpacked with
  ``dpkg-deb -x``.

Layout: ``cache/downloads/<manager>/<archive>`` with a ``<slug>.json`` record beside it (version, sha256), and
``cache/unpacked/<manager>/<slug>-<version>-<keep hash>/`` holding only the members the package's ``keep`` patterns
name. An archive is placed by `pbe.files.write_file` (renamed into place when complete) and an unpacked folder is
built under a temporary name and renamed when complete, so an interrupted run leaves no half-written file. A cached
archive whose sha256 still matches its record is used without asking the registry again.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pbe.data.objects_fetch.config import Manager, Package
from pbe.files import write_file, write_json


class FetchError(Exception):
    """A failure the user can act on; the command prints it as one ``error: ...`` line and exits with 1."""


@dataclass(frozen=True)
class Download:
    package: Package
    version: str
    archive: Path
    sha256: str
    size: int

    def record(self) -> dict:
        return {
            "manager": self.package.manager,
            "name": self.package.name,
            "version": self.version,
            "archive": self.archive.name,
            "sha256": self.sha256,
            "size": self.size,
        }


# --- clients ------------------------------------------------------------------------------------------------------

_INSTALL_HINTS = {
    "npm": "install Node.js's npm, e.g. `apt-get install npm`",
    "apt-get": "it comes with Debian's apt; run on a Debian or Ubuntu machine",
    "apt-cache": "it comes with Debian's apt; run on a Debian or Ubuntu machine",
    "dpkg-deb": "install dpkg, e.g. `apt-get install dpkg`",
}


def find_program(name: str, needed_for: str) -> str:
    """The path of an executable on PATH; a FetchError naming it (and what needs it) when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise FetchError(
            f"{name} not found on PATH; it is needed to {needed_for} ({_INSTALL_HINTS.get(name, '')})"
        )
    return path


def client_command(manager: Manager) -> list[str]:
    """The command that fetches ``manager``'s archives (pip is this Python's own ``python -m pip``)."""
    if manager == "pypi":
        if importlib.util.find_spec("pip") is None:
            raise FetchError(
                f"pip is not installed for {sys.executable}; it is needed to fetch the PyPI packages "
                "(python -m ensurepip)"
            )
        return [sys.executable, "-m", "pip"]
    if manager == "npm":
        return [find_program("npm", "fetch the npm packages")]
    return [find_program("apt-get", "fetch the Debian packages")]


def require_clients(packages: list[Package]) -> None:
    """Fail before any download when a client that one of ``packages`` needs is missing."""
    for manager in dict.fromkeys(p.manager for p in packages):
        client_command(manager)
        if manager == "debian":
            find_program("apt-cache", "check the Debian packages")
            find_program("dpkg-deb", "unpack the Debian packages")


_NOISE = ("A complete log of this run", "If you are behind a proxy", "    at ", "is ignored: it is neither")


def _error_line(text: str) -> str:
    """The most telling line of a client's output: its last error line (stack frames and advice left out), else
    its last line."""
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not any(n in line for n in _NOISE)
    ]
    lines = [line for line in lines if line not in ("npm error", "npm error }")]
    marks = ("error", "ERROR", "E:", "404", "ENOTFOUND")
    errors = [line for line in lines if any(mark in line for mark in marks)]
    line = (errors or lines or ["(no output)"])[-1]
    return line if len(line) <= 300 else line[:297] + "..."


def _npm_summary(stdout: str) -> str | None:
    """npm --json reports a failure as {"error": {"summary": ...}} on stdout."""
    try:
        return json.loads(stdout[stdout.index("{") :])["error"]["summary"]
    except (ValueError, KeyError, TypeError):
        return None


def run_client(command: list[str], what: str, cwd: Path, timeout: float) -> str:
    """Run a client; its stdout, or a FetchError naming ``what`` with the client's own error line."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FetchError(f"{what} timed out after {timeout:.0f} s; is the registry reachable?") from None
    except OSError as e:
        raise FetchError(f"{what}: cannot run {command[0]} ({e.strerror or e})") from None
    if result.returncode != 0:
        detail = _npm_summary(result.stdout) or _error_line(result.stderr + "\n" + result.stdout)
        raise FetchError(f"{what} failed (exit code {result.returncode}): {detail}")
    return result.stdout


# --- fetching one archive -------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _only_file(folder: Path, suffix: str, what: str) -> Path:
    found = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
    if len(found) != 1:
        raise FetchError(f"{what}: expected one {suffix} file, got {[p.name for p in found]}")
    return found[0]


def _npm_pack(package: Package, folder: Path, timeout: float) -> tuple[Path, str]:
    what = f"npm pack {package.spec}"
    command = [*client_command("npm"), "pack", package.spec, "--json", "--pack-destination", str(folder)]
    out = run_client(command, what, folder, timeout)
    try:
        info = json.loads(out[out.index("[") :])[0]
    except (ValueError, IndexError, KeyError):
        raise FetchError(f"{what}: cannot read npm's JSON report") from None
    archive = folder / info["filename"]
    algorithm, _, expected = info["integrity"].partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, archive.read_bytes()).digest()).decode()
    if actual != expected:
        raise FetchError(f"{what}: the archive does not match the registry's {algorithm} integrity")
    return archive, info["version"]


def _pip_download(package: Package, folder: Path, timeout: float) -> tuple[Path, str]:
    what = f"pip download {package.spec}"
    options = [
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(folder),
    ]
    run_client([*client_command("pypi"), *options, package.spec], what, folder, timeout)
    return _only_file(folder, ".whl", what), str(package.version)


def _apt_download(package: Package, folder: Path, timeout: float) -> tuple[Path, str]:
    what = f"apt-get download {package.spec}"
    try:
        run_client([*client_command("debian"), "download", package.spec], what, folder, timeout)
    except FetchError as e:
        if "Unable to locate" in str(e) or "has no installation candidate" in str(e):
            raise FetchError(f"{e} (run `apt-get update` first)") from None
        raise
    archive = _only_file(folder, ".deb", what)
    dpkg_deb = find_program("dpkg-deb", "unpack the Debian packages")
    version = run_client(
        [dpkg_deb, "--field", str(archive), "Version"], f"dpkg-deb --field {archive.name}", folder, 60
    )
    version = version.strip()
    apt_cache = find_program("apt-cache", "check the Debian packages")
    show = run_client(
        [apt_cache, "show", "--no-all-versions", f"{package.name}={version}"],
        f"apt-cache show {package.name}",
        folder,
        60,
    )
    expected = [line.split(":", 1)[1].strip() for line in show.splitlines() if line.startswith("SHA256:")]
    if expected and sha256_file(archive) not in expected:
        raise FetchError(f"{what}: the archive does not match the SHA256 of Debian's package index")
    return archive, version


# manager -> (package, staging folder, timeout) -> (the archive fetched into the folder, its version). Tests replace
# these entries to serve archives from a folder instead of a registry.
FETCHERS: dict[str, Callable[[Package, Path, float], tuple[Path, str]]] = {
    "npm": _npm_pack,
    "pypi": _pip_download,
    "debian": _apt_download,
}


def _record_path(package: Package, cache: Path) -> Path:
    return cache / "downloads" / package.manager / f"{package.slug}.json"


def cached_download(package: Package, cache: Path) -> Download | None:
    """The archive already in the cache, when its record matches the pinned version and its sha256."""
    record_path = _record_path(package, cache)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        archive = record_path.parent / record["archive"]
        if package.version is not None and record["version"] != package.version:
            return None
        if not archive.is_file() or sha256_file(archive) != record["sha256"]:
            return None
        return Download(package, record["version"], archive, record["sha256"], archive.stat().st_size)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fetch_archive(package: Package, cache: Path, timeout: float) -> Download:
    """Fetch ``package`` with its client into the cache (atomically) and record its version and sha256."""
    folder = _record_path(package, cache).parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fetching-") as staging:
        fetched, version = FETCHERS[package.manager](package, Path(staging), timeout)
        digest, size = sha256_file(fetched), fetched.stat().st_size
        archive = write_file(
            folder / fetched.name, lambda target: os.replace(fetched, target), overwrite=True
        )
    download = Download(package, version, archive, digest, size)
    write_json(_record_path(package, cache), download.record(), overwrite=True)
    return download


# --- unpacking ------------------------------------------------------------------------------------------------------


def _kept(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _safe_relative(name: str) -> PurePosixPath | None:
    """A member name as a relative path inside the unpack folder; None for absolute paths or ones with '..'."""
    path = PurePosixPath(name.removeprefix("./"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    return path


def _tar_members(archive: Path, patterns: tuple[str, ...]) -> Iterator[tuple[PurePosixPath, bytes]]:
    with tarfile.open(archive) as tar:
        for member in tar:
            path = _safe_relative(member.name)
            if member.isfile() and path is not None and _kept(str(path), patterns):
                yield path, tar.extractfile(member).read()


def _zip_members(archive: Path, patterns: tuple[str, ...]) -> Iterator[tuple[PurePosixPath, bytes]]:
    with zipfile.ZipFile(archive) as wheel:
        for info in wheel.infolist():
            path = _safe_relative(info.filename)
            if not info.is_dir() and path is not None and _kept(str(path), patterns):
                yield path, wheel.read(info)


def _deb_members(archive: Path, patterns: tuple[str, ...]) -> Iterator[tuple[PurePosixPath, bytes]]:
    dpkg_deb = find_program("dpkg-deb", "unpack the Debian packages")
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".dpkg-deb-") as tree:
        run_client([dpkg_deb, "-x", str(archive), tree], f"dpkg-deb -x {archive.name}", archive.parent, 600)
        root = Path(tree).resolve()
        for file in sorted(root.rglob("*")):
            path = PurePosixPath(file.relative_to(root).as_posix())
            # a symbolic link is followed to the file it names, but only inside the package
            inside = file.resolve().is_relative_to(root)
            if inside and file.is_file() and _kept(str(path), patterns):
                yield path, file.read_bytes()


def _members(archive: Path, patterns: tuple[str, ...]) -> Iterator[tuple[PurePosixPath, bytes]]:
    if archive.name.endswith(".deb"):
        return _deb_members(archive, patterns)
    if archive.name.endswith((".whl", ".zip")):
        return _zip_members(archive, patterns)
    return _tar_members(archive, patterns)


def unpacked_folder(download: Download, cache: Path) -> Path:
    keep_hash = hashlib.sha256("\n".join(download.package.keep).encode()).hexdigest()[:8]
    name = f"{download.package.slug}-{download.version}-{keep_hash}".replace(":", "_")
    return cache / "unpacked" / download.package.manager / name


def unpack(download: Download, cache: Path) -> Path:
    """The folder holding the kept members of ``download``'s archive; built (atomically) on first use."""
    final = unpacked_folder(download, cache)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        count = 0
        for path, data in _members(download.archive, download.package.keep):
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            count += 1
        if count == 0:
            raise FetchError(
                f"{download.package.spec}: {download.archive.name} holds none of the expected files "
                f"({', '.join(download.package.keep)})"
            )
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
