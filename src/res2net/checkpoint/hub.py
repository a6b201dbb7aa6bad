"""Download published weights once into ``$RES2NET_HOME`` and use them offline afterwards.

Files are written to a temporary name in the cache folder and renamed only after their
sha256 matches the prefix the publishers put in the file name, so an interrupted or
corrupted download never looks cached. A cached file is trusted without re-hashing:
it can only have got there through that check.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from res2net.errors import CheckpointError
from res2net.home import home_dir
from res2net.models import PretrainedCfg

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0


def cache_dir() -> Path:
    """Where downloaded weights live: ``$RES2NET_HOME/checkpoints``."""
    return home_dir() / "checkpoints"


def _unreachable(url: str, reason: object) -> CheckpointError:
    return CheckpointError(
        f"cannot download {url} ({reason}); fetch the file another way and pass it with "
        "checkpoint_path=<file> (command line: --checkpoint <file>; train/validate: --ckpt_path <file>)"
    )


def _download(url: str, partial: Path) -> str:
    """Stream ``url`` into ``partial``; return its sha256 hex digest."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, partial.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=partial.name, disable=None) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def download_cached(url: str, file_name: str, sha256_prefix: str) -> Path:
    """The cached copy of ``url`` as ``file_name``, downloading and verifying it if absent."""
    dest = cache_dir() / file_name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{file_name}.", suffix=".part")
    os.close(fd)
    partial = Path(tmp)
    try:
        log.info("downloading %s to %s", url, dest)
        try:
            sha = _download(url, partial)
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
            # HTTPError's str() has the status code; URLError's reason has the socket error.
            reason = exc if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
            raise _unreachable(url, reason) from exc
        if sha256_prefix and not sha.startswith(sha256_prefix.lower()):
            raise CheckpointError(
                f"{url}: downloaded file has sha256 {sha[:16]}..., expected a prefix of {sha256_prefix}; "
                "the download is corrupted or the file changed upstream"
            )
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def fetch_pretrained(cfg: PretrainedCfg) -> Path:
    """Local path of the weights ``cfg`` describes (downloaded and verified on first use)."""
    if not cfg.url:
        raise CheckpointError(f"weights {cfg.architecture}.{cfg.tag} have no URL to download them from")
    return download_cached(cfg.url, cfg.file_name, cfg.sha256)
