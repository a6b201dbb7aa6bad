"""Pretrained downloads: served from a local HTTP server, never the network."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from checkpoint_helpers import randomise_, tiny_res2net

from res2net import create_model
from res2net.checkpoint import hub
from res2net.errors import CheckpointError
from res2net.models import registry
from res2net.models.registry import ModelSpec, PretrainedCfg

MODEL = "hub_tiny"
FILE = "hub_tiny-weights.pth"


@dataclass
class Server:
    root: Path
    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    state = Server(root=root, url="")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.requests.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "res2net_home"
    monkeypatch.setenv("RES2NET_HOME", str(path))
    return path


@pytest.fixture
def published(server: Server) -> torch.nn.Module:
    """A tiny network whose weights the server publishes."""
    model = randomise_(tiny_res2net(), seed=4)
    torch.save(model.state_dict(), server.root / FILE)
    return model


def _register(monkeypatch: pytest.MonkeyPatch, url: str, sha256_prefix: str) -> None:
    cfg = PretrainedCfg(
        tag="official", url=url, sha256_prefix=sha256_prefix, source="official", license="test", top1=None,
        num_classes=10,
    )
    spec = ModelSpec(MODEL, "res2net", {"layers": (1, 1, 1, 1), "base_width": 4, "scale": 2}, "test",
                     {"official": cfg})
    monkeypatch.setitem(registry.REGISTRY, MODEL, spec)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verify_cache_then_offline(
    server: Server, published: torch.nn.Module, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(monkeypatch, f"{server.url}/{FILE}", _sha(server.root / FILE)[:8])
    first = create_model(MODEL, pretrained=True, num_classes=10)
    assert server.requests == [f"/{FILE}"]
    cached = home / "checkpoints" / FILE
    assert cached.read_bytes() == (server.root / FILE).read_bytes()
    assert [p.name for p in cached.parent.iterdir()] == [FILE]  # no leftover partial download
    assert all(torch.equal(first.state_dict()[k], v) for k, v in published.state_dict().items())

    (server.root / FILE).unlink()  # the host no longer has it: the cache must serve
    again = create_model(MODEL, pretrained="official", num_classes=10)
    assert server.requests == [f"/{FILE}"]
    assert torch.equal(again.conv1.weight, published.conv1.weight)


def test_sha256_mismatch_leaves_nothing_cached(
    server: Server, published: torch.nn.Module, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{server.url}/{FILE}"
    wrong = "0" * 8 if not _sha(server.root / FILE).startswith("0" * 8) else "f" * 8
    _register(monkeypatch, url, wrong)
    with pytest.raises(CheckpointError, match="sha256") as err:
        hub.fetch_pretrained(MODEL, None)
    assert url in str(err.value)
    assert not any((home / "checkpoints").iterdir())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_host_names_url_and_local_alternative(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/{FILE}"
    _register(monkeypatch, url, "abcdef12")
    with pytest.raises(CheckpointError) as err:
        create_model(MODEL, pretrained=True, num_classes=10)
    message = str(err.value)
    assert url in message and "checkpoint_path=" in message and "--checkpoint" in message
    assert not any((home / "checkpoints").iterdir())


def test_missing_file_on_server(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{server.url}/does-not-exist.pth"
    _register(monkeypatch, url, "abcdef12")
    with pytest.raises(CheckpointError, match="404") as err:
        hub.fetch_pretrained(MODEL, "official")
    assert url in str(err.value)


def test_unknown_tag_and_model_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, "http://127.0.0.1:9/x.pth", "abcdef12")
    with pytest.raises(CheckpointError, match="available: official"):
        hub.fetch_pretrained(MODEL, "mindcv")
    with pytest.raises(CheckpointError, match="no published weights"):
        hub.fetch_pretrained("res2net152", None)


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RES2NET_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / ".cache" / "res2net" / "checkpoints"
