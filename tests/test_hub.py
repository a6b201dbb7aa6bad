"""Pretrained downloads: served from a local HTTP server, never the network."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from checkpoint_helpers import randomise_, tiny_res2net

from res2net import create_model, register_model, register_weights
from res2net.checkpoint import hub
from res2net.errors import CheckpointError, UserError
from res2net.models import REGISTRY

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


register_model(MODEL, "res2net", {"layers": (1, 1, 1, 1), "base_width": 4, "scale": 2}, "test")


def _register(url: str, sha256_prefix: str) -> None:
    """Publish MODEL's weights at ``url`` (each test its own; replace=True re-points the tag)."""
    register_weights(MODEL, "official", url=url, sha256=sha256_prefix, license="test", num_classes=10, replace=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verify_cache_then_offline(
    server: Server, published: torch.nn.Module, home: Path
) -> None:
    _register(f"{server.url}/{FILE}", _sha(server.root / FILE)[:8])
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
    server: Server, published: torch.nn.Module, home: Path
) -> None:
    url = f"{server.url}/{FILE}"
    wrong = "0" * 8 if not _sha(server.root / FILE).startswith("0" * 8) else "f" * 8
    _register(url, wrong)
    with pytest.raises(CheckpointError, match="sha256") as err:
        hub.fetch_pretrained(REGISTRY.pretrained_cfg(MODEL))
    assert url in str(err.value)
    assert not any((home / "checkpoints").iterdir())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_host_names_url_and_local_alternative(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/{FILE}"
    _register(url, "abcdef12")
    with pytest.raises(CheckpointError) as err:
        create_model(MODEL, pretrained=True, num_classes=10)
    message = str(err.value)
    assert url in message and "checkpoint_path=" in message and "--checkpoint" in message
    assert not any((home / "checkpoints").iterdir())


def test_missing_file_on_server(server: Server) -> None:
    url = f"{server.url}/does-not-exist.pth"
    _register(url, "abcdef12")
    with pytest.raises(CheckpointError, match="404") as err:
        hub.fetch_pretrained(REGISTRY.pretrained_cfg(MODEL, "official"))
    assert url in str(err.value)


def test_unknown_tag_and_model_without_weights() -> None:
    _register("http://127.0.0.1:9/x.pth", "abcdef12")
    with pytest.raises(UserError, match=r"no weights tagged 'mindcv' \(available: official\)"):
        create_model(MODEL, pretrained="mindcv")
    with pytest.raises(UserError, match="no published weights"):
        create_model("res2net152", pretrained=True)


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RES2NET_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / ".cache" / "res2net" / "checkpoints"


REPO_ROOT = Path(__file__).resolve().parents[1]


def test_torch_hub_loads_every_name_from_the_local_clone(tmp_path: Path) -> None:
    """torch.hub.load(..., source="local"). torch 2.14's hub.list and hub.help accept GitHub repos
    only; what they would list is hubconf's public callables, checked here by that same rule."""
    from res2net.models.registry import SHIPPED_NAMES

    spec = importlib.util.spec_from_file_location("res2net_hubconf", REPO_ROOT / "hubconf.py")
    assert spec is not None and spec.loader is not None
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    listed = {name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")}
    assert listed == set(SHIPPED_NAMES)
    assert all(importlib.util.find_spec(dep) is not None for dep in hubconf.dependencies)
    assert "create_model('res2net50'" in hubconf.res2net50.__doc__

    model = torch.hub.load(str(REPO_ROOT), "res2net50_v1b", source="local", num_classes=10)
    assert model.pretrained_cfg.architecture == "res2net50_v1b_26w_4s" and model.num_classes == 10
    weights = tmp_path / "v1b.pth"
    torch.save(model.state_dict(), weights)
    loaded = torch.hub.load(str(REPO_ROOT), "res2net50d", source="local", checkpoint_path=weights)
    assert torch.equal(loaded.fc.weight, model.fc.weight) and loaded.pretrained_cfg.url == weights.resolve().as_uri()
