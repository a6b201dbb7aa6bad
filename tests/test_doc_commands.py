"""Every shell command in the README and in docs/ either runs here (on the digits, small sizes), is run by a named
test, or says in the text what it needs that the test machine lacks (``# needs: ImageNet``, a GPU, a cluster...).

Commands run in document order in a sandbox folder holding this clone's ``train.py``, ``validate.py`` and
``configs/``, with the demo recipe shrunk to one epoch at 16 px (the command texts stay as documented). The virtual
environment's set-up (``python3 -m venv .venv && .venv/bin/pip install ...``) is what .ci/run does before the tests,
so it is stripped; ``python``, ``res2net`` and ``.venv/bin/`` resolve to this interpreter's environment. A
``res2net serve`` command starts in the background on a free port (the page's ``localhost:8000`` points there) and
stops at the end of its page. ``docs/history/`` records earlier runs and is not re-run.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "# needs:"
SETUP = re.compile(r"^python3 -m venv \.venv && \.venv/bin/pip install [^&]*&& ")
TEST_COMMAND = 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" && .venv/bin/python -m pytest -q'
#: Commands that take minutes at full size, run on small data by these tests instead.
RUN_BY = {
    "res2net demo-data --task detection data/digits_detection": "test_detection.py::test_train_resume_evaluate_predict",
    "res2net train-detection -c configs/detection/": "test_detection.py::test_train_resume_evaluate_predict",
    "res2net evaluate-detection ": "test_detection.py::test_train_resume_evaluate_predict",
    "res2net predict-detection ": "test_detection.py::test_train_resume_evaluate_predict",
    "res2net serve --engine triton ": "test_triton.py::test_serve_engine_triton_under_load_and_sigterm",
    "res2net finetune ": "test_finetune.py::test_finetune_one_folder_end_to_end",
    "res2net serve --checkpoint runs/fasterrcnn": "test_demo_page.py::"
                                                  "test_a_detection_checkpoint_is_served_as_a_page_that_draws_its_boxes",
}
#: The demo recipe, shrunk for the sandbox: one epoch at 16 px.
SHRINK = {"epoch_size: 6": "epoch_size: 1", "image_resize: 32": "image_resize: 16",
          "decay_epochs: 5": "decay_epochs: 1",
          "warmup_epochs: 1": "warmup_epochs: 0"}


def commands(page: Path) -> list[str]:
    """The page's shell commands (continuation lines joined), in order; comment-only lines are not commands."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        current = ""
        for line in block.splitlines():
            current = f"{current} {line.strip()}" if current else line.strip()
            if current.endswith("\\"):
                current = current[:-1].rstrip()
                continue
            if current and not current.startswith("#"):
                found.append(current)
            current = ""
    return found


def runner(command: str) -> str | None:
    """The test that runs ``command`` elsewhere, or None."""
    return next((test for prefix, test in RUN_BY.items() if command.startswith(prefix) or f"&& {prefix}" in command
                 ), None)


def runnable(command: str) -> bool:
    return MARKER not in command and command != TEST_COMMAND and runner(command) is None and not (
        command.startswith("pip install") or SETUP.fullmatch(command + " && "))


def test_every_command_is_run_covered_or_marked() -> None:
    """Lists what runs here, what other tests run, and what is marked; fails on anything else."""
    listing = {"run here": [], "run by a test": [], "set-up (what .ci/run does first)": [], "marked": []}
    for page in PAGES:
        for command in commands(page):
            where = page.relative_to(ROOT)
            if not runnable(command) and MARKER not in command and runner(command) is None:
                listing["set-up (what .ci/run does first)"].append(f"{where}: {command[:60]}")
            elif MARKER in command:
                listing["marked"].append(f"{where}: {command.split(MARKER, 1)[1].strip()}: {command[:60]}")
            elif runner(command):
                test = runner(command)
                path, name = test.split("::")  # type: ignore[union-attr]
                assert f"def {name}(" in (ROOT / "tests" / path).read_text(), f"{test} does not exist"
                listing["run by a test"].append(f"{where}: {test}: {command[:60]}")
            else:
                listing["run here"].append(f"{where}: {command[:90]}")
    for kind, entries in listing.items():
        print(f"\n{kind} ({len(entries)}):\n  " + "\n  ".join(entries))
    assert listing["run here"] and listing["marked"]
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text() and TEST_COMMAND in (ROOT / "README.md").read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    for name in ("train.py", "validate.py"):
        (folder / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "configs", folder / "configs")
    recipe = folder / "configs" / "demo" / "res2net50_digits.yaml"
    text = recipe.read_text()
    for full, small in SHRINK.items():
        assert full in text, f"the demo recipe no longer says {full!r}: update SHRINK"
        text = text.replace(full, small)
    recipe.write_text(text)
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    for name, target in {"python": sys.executable, "python3": sys.executable,
                         "res2net": str(Path(sys.executable).with_name("res2net"))}.items():
        # A script, not a symlink: Python finds its virtual environment from the path it was started as.
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        wrapper.chmod(0o755)
    (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return folder


@pytest.fixture(scope="module")
def already_run() -> set[str]:
    """Commands that succeeded on an earlier page in this sandbox: a page that repeats one (the fine-tuning page
    starts with the README's fine-tuning command) finds its outputs there, and it is not run twice."""
    return set()


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_pages_commands_run(page: Path, sandbox: Path, already_run: set[str],
                                subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "PATH": f"{sandbox / '.bin'}{os.pathsep}{subprocess_env['PATH']}"}
    servers: list[subprocess.Popen[str]] = []
    port = _free_port()
    try:
        for command in filter(runnable, commands(page)):
            if command in already_run and not command.startswith("res2net serve "):
                continue
            command = SETUP.sub("", command).replace("localhost:8000", f"localhost:{port}")
            if command.startswith("res2net serve "):  # one at a time on the page's port: stop the previous one
                for server in servers:
                    server.terminate()
                    server.wait(60)
                serve = "exec " + command.replace("--port 8000", f"--port {port}")  # exec: terminate() stops it
                server = subprocess.Popen(serve, shell=True, cwd=sandbox, env=env, text=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                servers.append(server)
                deadline = time.monotonic() + 120
                while not _ready(port):
                    assert server.poll() is None and time.monotonic() < deadline, f"{command}: {server.stderr.read()}"
                    time.sleep(0.5)
                continue
            started = time.monotonic()
            done = subprocess.run(command, shell=True, cwd=sandbox, env=env, capture_output=True, text=True,
                                  timeout=600, executable="/bin/bash")
            print(f"{time.monotonic() - started:6.1f} s  {command}")
            assert done.returncode == 0, f"{page.name}: {command}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
            already_run.add(command)
    finally:
        for server in servers:
            if server.poll() is None:
                server.terminate()
                server.wait(60)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
