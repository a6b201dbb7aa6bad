"""``retain_freed_memory``: freed activation-sized blocks stay in the process, so reusing them
costs no page faults (each test runs in a fresh interpreter: glibc's settings are per process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from res2net.cpu_training.host_memory import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="mallopt's thresholds are glibc's")

# Twenty steps that each allocate, write and free three 48 MiB maps (res2net50's biggest fp32
# activations at batch 16, 224 px, are 49 MiB; glibc maps anything over 32 MiB afresh),
# counting minor page faults after one warm-up step. Retained, glibc's heap takes a few steps
# to settle into reusing the freed blocks (two or three here), then faults no more.
FAULTS_PER_STEP = """
import json, resource, sys
import torch
from res2net.cpu_training.host_memory import retain_freed_memory
retained = retain_freed_memory() if sys.argv[1] == "retain" else False
def step():
    maps = [torch.empty(48 << 20, dtype=torch.uint8) for _ in range(3)]
    for m in maps:
        m.fill_(1)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"retained": retained, "faults_per_step": (after - before) / 20}))
"""


def faults_per_step(mode: str, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    return json.loads(done.stdout)


def test_freed_maps_are_reused_without_page_faults(subprocess_env: dict[str, str]) -> None:
    default = faults_per_step("default", subprocess_env)
    retained = faults_per_step("retain", subprocess_env)
    pages_per_step = 3 * (48 << 20) // 4096
    assert not default["retained"] and retained["retained"]
    # glibc's default maps each block afresh: every page faults in again, each step.
    assert default["faults_per_step"] >= 0.9 * pages_per_step
    assert retained["faults_per_step"] <= 0.2 * pages_per_step
