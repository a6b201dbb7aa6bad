"""Published weights, downloaded once into ``$RES2NET_HOME`` and used offline afterwards.

A weight tag names up to two sources, tried in this order: a Hugging Face Hub repository
(``hf_hub_id``: timm republishes eleven of this family's files there, where most users now find them;
through ``huggingface_hub``, its cache and offline mode) and the publisher's own URL (the authors'
bucket, MindSpore's server), downloaded with ``torch.hub.download_url_to_file``, which writes to a
temporary file, checks the sha256 prefix the publishers put in the file names, and renames only a
verified file into place, so an interrupted or corrupted download never looks cached. A cached file
is trusted without re-hashing: it can only have got there through that check.
"""

from __future__ import annotations

import logging
import sys
import urllib.error
from pathlib import Path

import torch

from res2net.errors import CheckpointError
from res2net.home import home_dir
from res2net.models import PretrainedCfg

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where downloaded weights live: ``$RES2NET_HOME/checkpoints``."""
    return home_dir() / "checkpoints"


def _unreachable(url: str, reason: object) -> CheckpointError:
    return CheckpointError(
        f"cannot download {url} ({reason}); fetch the file another way and pass it with "
        "checkpoint_path=<file> (command line: --checkpoint <file>; train/validate: --ckpt_path <file>)"
    )


def download_cached(url: str, file_name: str, sha256_prefix: str) -> Path:
    """The cached copy of ``url`` as ``file_name``, downloading and verifying it if absent."""
    dest = cache_dir() / file_name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, dest)
    try:
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=sha256_prefix.lower() or None,
                                       progress=sys.stderr.isatty())
    except RuntimeError as exc:  # torch.hub's hash check
        raise CheckpointError(f"{url}: the downloaded file's sha256 does not start with {sha256_prefix} ({exc}); "
                              "the download is corrupted or the file changed upstream") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # HTTPError's str() has the status code; URLError's reason has the socket error.
        reason = exc if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        raise _unreachable(url, reason) from None
    return dest


def fetch_pretrained(cfg: PretrainedCfg) -> Path:
    """Local path of the weights ``cfg`` describes: its Hub copy first, then its URL (see the module)."""
    if not cfg.url and not cfg.hf_hub_id:
        raise CheckpointError(f"weights {cfg.architecture}.{cfg.tag} have no source to download them from")
    failures = []
    if cfg.hf_hub_id:
        from .hf import WEIGHT_FILES, download  # a function-level import: huggingface_hub is an extra

        try:
            folder = download(cfg.hf_hub_id)
            return next(folder / name for name in WEIGHT_FILES if (folder / name).is_file())
        except Exception as exc:  # noqa: BLE001 - any failure of the first source falls through to the next
            failures.append(str(exc))
            if not cfg.url:
                raise
    try:
        return download_cached(cfg.url, cfg.file_name, cfg.sha256)
    except CheckpointError as exc:
        raise CheckpointError("; ".join([*failures, str(exc)])) from None
