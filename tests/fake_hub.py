"""A Hugging Face Hub stand-in on 127.0.0.1: the resolve endpoint huggingface_hub downloads from.

``HF_ENDPOINT`` pointed here makes ``huggingface_hub.hf_hub_download`` fetch ``/{repo}/resolve/{revision}/{file}``
through its own code (metadata from a HEAD request: ``X-Repo-Commit``, ``ETag``, ``Content-Length``; then the
bytes, resumed from a ``Range`` as a real server resumes them), so its cache, revisions, tokens, retries and offline
mode are exercised for real. No network is involved.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class FakeHub:
    """``files[(repo, revision)][filename] = bytes``; what clients asked for; bytes to withhold per file."""

    files: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Authorization
    truncate: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def publish(self, repo: str, revision: str, files: dict[str, bytes]) -> None:
        self.files[(repo, revision)] = dict(files)


def _range_start(header: str | None) -> int:
    """The first byte of ``Range: bytes=N-`` (what a resuming client sends), 0 without one."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return 0
    return int(header[len("bytes=") : -1])


@contextmanager
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _resolve(self) -> tuple[bytes, str] | None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return None
            repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            content = hub.files.get((repo, revision), {}).get(name)
            return None if content is None else (content, name)

        def _answer(self, send_body: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Authorization")))
            found = self._resolve()
            if found is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            content, name = found
            start = _range_start(self.headers.get("Range"))
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", hashlib.sha1(repr(sorted(hub.files)).encode()).hexdigest())
            self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
            self.send_header("Content-Length", str(len(content) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.end_headers()
            if send_body:  # a truncated file's connection drops that many bytes before its end, on every try
                self.wfile.write(content[start : len(content) - hub.truncate.get(name, 0)])
                self.close_connection = True

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(send_body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(send_body=True)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
