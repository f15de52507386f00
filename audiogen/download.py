"""Explicit downloads with a checksum: the only module in audiogen that opens a URL.

Nothing here runs at import time; a download happens only when a user asks for it
(``audiogen-fad download-weights``). A file is streamed to a temporary name beside its
destination while its SHA-256 is computed, checked, and only then renamed into place, so the
destination either holds a verified file or does not exist.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

_CHUNK = 1 << 20  # 1 MiB: large enough to be fast, small enough to show progress

# The public torchvggish port's checkpoint. Its file name carries the first 8 hex digits of
# its SHA-256 (torch.hub's convention, which checks that prefix); the full digest is not
# published beside it, so the prefix is what a download is checked against by default.
VGGISH_WEIGHTS_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
VGGISH_WEIGHTS_FILENAME = "vggish-10086976.pth"
VGGISH_WEIGHTS_SHA256_PREFIX = "10086976"
VGGISH_URL_ENV = "AUDIOGEN_VGGISH_URL"
CACHE_ENV = "AUDIOGEN_CACHE"


class DownloadError(RuntimeError):
    """A download that failed or was refused; the message says which URL and why."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected SHA-256; nothing was kept."""


def default_cache_dir() -> Path:
    """``$AUDIOGEN_CACHE`` or ``~/.cache/audiogen``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "audiogen"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_expected(expected: str) -> str:
    expected = expected.strip().lower()
    if len(expected) < 8 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"expected SHA-256 must be at least 8 hex digits, got {expected!r}")
    return expected


def download_file(url: str, dest: str | Path, sha256: str, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` if and only if its SHA-256 starts with ``sha256``.

    Args:
        url: http(s) (or file) URL.
        dest: final path; its folder is created.
        sha256: the full hex digest or a prefix of at least 8 hex digits.
        progress: show a byte progress bar on stderr.
        timeout: socket timeout in seconds.

    Returns:
        ``dest``.

    Raises:
        ChecksumError: digest mismatch (the partial file is removed, ``dest`` untouched).
        DownloadError: network or HTTP failure.
    """
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    expected = _check_expected(sha256)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (explicit user request)
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise DownloadError(f"cannot download {url}: {err}") from err
            with response:
                total = response.headers.get("Content-Length")
                bar = tqdm(
                    total=int(total) if total and total.isdigit() else None,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                )
                with bar:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except OSError as err:
                            raise DownloadError(f"download of {url} interrupted: {err}") from err
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        found = digest.hexdigest()
        if not found.startswith(expected):
            raise ChecksumError(
                f"checksum mismatch for {url}: SHA-256 is {found}, expected {expected}"
                f"{'…' if len(expected) < 64 else ''}; the file was not kept"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def download_vggish_weights(
    cache_dir: str | Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Fetch the torchvggish checkpoint into the cache folder (``audiogen-fad download-weights``).

    Args:
        cache_dir: target folder; default :func:`default_cache_dir`.
        url: source; default ``$AUDIOGEN_VGGISH_URL`` or the public torchvggish release.
        sha256: expected digest or prefix; default the file name's prefix ``10086976``.
        force: download again even when a verified file is already there.
        progress: byte progress bar on stderr.

    Returns:
        the path of the verified file, ``cache_dir / vggish-10086976.pth``.
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    url = url or os.environ.get(VGGISH_URL_ENV) or VGGISH_WEIGHTS_URL
    expected = _check_expected(sha256 or VGGISH_WEIGHTS_SHA256_PREFIX)
    dest = folder / VGGISH_WEIGHTS_FILENAME
    if dest.exists() and not force and sha256_file(dest).startswith(expected):
        return dest
    return download_file(url, dest, expected, progress=progress)
