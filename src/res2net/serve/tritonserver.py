"""Running NVIDIA's ``tritonserver`` binary on an exported model repository.

``res2net serve --engine triton`` serves through Triton itself (its HTTP and gRPC endpoints, its
dynamic batcher, its metrics endpoint), not through a look-alike. The binary is found, in order,
at ``$RES2NET_TRITONSERVER``, inside an installed ``nvidia-pytriton`` package (the ``triton`` extra;
its wheel ships a CPU build with the Python backend and stubs for Python 3.8-3.13), on ``PATH``,
or at ``/opt/tritonserver/bin/tritonserver`` (NGC's container).

Why the binary and not PyTriton's Python API: PyTriton 0.7 requires NumPy < 2 and this package
runs on NumPy 2; its Python-backend stub, compiled against NumPy 1, hands a NumPy 2 process
arrays with a wrong item size (measured: an FP32 output arrives empty, a BYTES input is
mis-parsed). The classifier models this module serves exchange tensors through DLPack, which
does not involve NumPy's C layout, so tensor inputs work under NumPy 2 unchanged. Encoded
images (BYTES) can only be read through NumPy; they work where the models' Python finds
NumPy < 2: an environment with the ``triton`` extra (pytriton pins it), or a folder holding NumPy
1.x named by ``$RES2NET_TRITON_PYTHONPATH`` (torch, onnxruntime and Pillow built against NumPy 2
run on NumPy 1.x). The stub ignores ``PYTHONPATH``, but its ``sys.path`` starts with its working
directory, so tritonserver is started in that folder (measured: NumPy 1.26 is then what the
models import, and JPEG inputs through the ensemble give the PyTorch model's classes).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

NGC_BINARY = Path("/opt/tritonserver/bin/tritonserver")
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class TritonInstall:
    """A tritonserver binary, its Python backend and the libraries it needs."""

    binary: Path
    backends: Path | None  # None: the binary's own default (/opt/tritonserver/backends)
    python_stub: Path | None  # the stub matching this interpreter, when it must be copied into place
    library_path: Path | None


def find_tritonserver() -> TritonInstall:
    """The tritonserver to run, or a UserError saying how to get one."""
    configured = os.environ.get("RES2NET_TRITONSERVER")
    if configured:
        binary = Path(configured)
        if not binary.is_file():
            raise UserError(f"RES2NET_TRITONSERVER={configured} is not a file")
        return _install_around(binary)
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        binary = root / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            return _install_around(binary)
    on_path = shutil.which("tritonserver")
    if on_path:
        return _install_around(Path(on_path))
    if NGC_BINARY.is_file():
        return TritonInstall(NGC_BINARY, None, None, None)
    raise UserError("--engine triton needs NVIDIA's tritonserver: pip install 'res2net[triton]' (the nvidia-pytriton "
                    "wheel ships it), run inside NGC's Triton container, or set RES2NET_TRITONSERVER")


def _install_around(binary: Path) -> TritonInstall:
    """pytriton's layout: tritonserver/{bin,backends/python,python_backend_stubs/X.Y} and the
    wheel's ``nvidia_pytriton.libs`` beside the package."""
    home = binary.parent.parent
    stub = home / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / \
        "triton_python_backend_stub"
    libs = home.parent.parent / "nvidia_pytriton.libs"
    backends = home / "backends"
    return TritonInstall(binary, backends if backends.is_dir() else None, stub if stub.is_file() else None,
                         libs if libs.is_dir() else None)


@dataclass
class RunningTriton:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"


def _backend_directory(install: TritonInstall, scratch: Path) -> Path | None:
    """A backend folder whose Python backend has this interpreter's stub (pytriton keeps the stubs
    apart and copies the right one in at start-up; so do we, into a scratch folder)."""
    if install.backends is None or install.python_stub is None:
        return install.backends
    target = scratch / "backends"
    shutil.copytree(install.backends, target)
    stub = target / "python" / "triton_python_backend_stub"
    shutil.copyfile(install.python_stub, stub)
    for path in (stub, install.binary):
        if not os.access(path, os.X_OK):
            with contextlib.suppress(OSError):
                path.chmod(path.stat().st_mode | 0o111)
    return target


def bytes_inputs_supported() -> bool:
    """Whether the models' Python will read BYTES tensors correctly (NumPy < 2 there)."""
    if os.environ.get("RES2NET_TRITON_PYTHONPATH"):
        return True
    import numpy

    return int(numpy.__version__.split(".")[0]) < 2


def _environment(install: TritonInstall) -> dict[str, str]:
    env = dict(os.environ)
    # The Python-backend stub runs the models with the python found on PATH: this interpreter's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if install.library_path is not None:
        env["LD_LIBRARY_PATH"] = f"{install.library_path}{os.pathsep}{env.get('LD_LIBRARY_PATH', '')}"
    return env


@contextlib.contextmanager
def run_tritonserver(
    repository: Path, *, http_port: int, grpc_port: int, metrics_port: int, host: str = "127.0.0.1",
    log: Path | None = None,
) -> Iterator[RunningTriton]:
    """Start tritonserver on ``repository``, wait until it reports ready, stop it on exit."""
    install = find_tritonserver()
    with tempfile.TemporaryDirectory(prefix="res2net-triton-") as scratch:
        backends = _backend_directory(install, Path(scratch))
        command = [str(install.binary), f"--model-repository={repository}", f"--http-port={http_port}",
                   f"--grpc-port={grpc_port}", f"--metrics-port={metrics_port}", f"--http-address={host}",
                   f"--grpc-address={host}", "--exit-on-error=true", "--strict-readiness=true"]
        if backends is not None:
            command.append(f"--backend-directory={backends}")
        # Appended to: a supervised restart keeps the crashed run's log above the new one.
        output = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=_environment(install),
                                   cwd=os.environ.get("RES2NET_TRITON_PYTHONPATH") or None,
                                   preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        running = RunningTriton(process, http_port, grpc_port, metrics_port)
        try:
            _wait_ready(running, log)
            yield running
        finally:
            stop(process)
            if log is not None:
                output.close()  # type: ignore[union-attr]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies, so a killed
    ``res2net serve`` never leaves a tritonserver holding its ports (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_ready(running: RunningTriton, log: Path | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = f"http://{running.http_url}/v2/health/ready"
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
            raise UserError(f"tritonserver exited with status {running.process.returncode} before it was ready "
                            f"(port in use, or a model failed to load){': ' + tail if tail else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise UserError(f"tritonserver was not ready after {READY_TIMEOUT_S:.0f} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM (Triton drains in-flight requests and unloads its models), SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


#: Seconds between a crash and the restart, growing with consecutive crashes.
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: A run that served this long before it crashed starts the backoff afresh.
STABLE_AFTER_S = 60.0
#: Restarts in a row that fail before Triton is ready: then the engine stops with an error.
MAX_FAILED_STARTS = 5


def describe_exit(status: int | None) -> str:
    """``status -6 (SIGABRT)`` for a signal, ``status 1`` for an exit code."""
    if status is not None and status < 0:
        with contextlib.suppress(ValueError):
            return f"status {status} ({signal.Signals(-status).name})"
    return f"status {status}"


def supervise_tritonserver(
    repository: Path, *, http_port: int, grpc_port: int, metrics_port: int, host: str, log: Path,
    stopping: Callable[[float], bool], on_ready: Callable[[int], None], report: Callable[[str], None],
) -> int:
    """Run tritonserver until ``stopping(timeout)`` returns True (it waits up to ``timeout`` seconds
    for the stop request), restarting it on the same ports after every unexpected exit, with
    :data:`RESTART_BACKOFF_S` between attempts. One request that crashes Triton (its HTTP front end
    aborts on some malformed tensors) then costs the service seconds, not its life.

    ``on_ready(restarts)`` is called each time Triton is ready (0 the first time); ``report`` gets
    one line per crash, naming the exit status and Triton's last log line. The first start's
    failure, or :data:`MAX_FAILED_STARTS` failed restarts in a row, raise :class:`UserError`.
    Returns the number of restarts.
    """
    restarts = failed_starts = crashes_in_a_row = 0
    while True:
        started = time.monotonic()
        try:
            with run_tritonserver(repository, http_port=http_port, grpc_port=grpc_port,
                                  metrics_port=metrics_port, host=host, log=log) as server:
                failed_starts = 0
                on_ready(restarts)
                while not stopping(0.5):
                    if server.process.poll() is not None:
                        break
                else:
                    return restarts
                status = server.process.returncode
        except UserError:
            if restarts == 0:
                raise
            failed_starts += 1
            if failed_starts >= MAX_FAILED_STARTS:
                raise UserError(f"tritonserver failed to start {failed_starts} times in a row after a crash; "
                                f"see {log}") from None
            status = None
        crashes_in_a_row = 1 if time.monotonic() - started > STABLE_AFTER_S else crashes_in_a_row + 1
        delay = RESTART_BACKOFF_S[min(crashes_in_a_row, len(RESTART_BACKOFF_S)) - 1]
        restarts += 1
        what = "did not become ready" if status is None else f"stopped unexpectedly ({describe_exit(status)})"
        report(f"tritonserver {what}; restarting it in {delay:g} s on the same ports (restart {restarts}); "
               f"last log line: {_last_log_line(log)}")
        if stopping(delay):
            return restarts


def _last_log_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][-300:] if lines else "(empty log)"
