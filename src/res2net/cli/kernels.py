"""``res2net build-kernels``: compile the fused CPU-training kernels now, so ``cpu_kernels: auto`` finds them."""

from __future__ import annotations

import argparse

from .handlers import lazy_handler


def add_build_kernels_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-kernels",
        help="compile the fused CPU BatchNorm kernels for this machine (once; cpu_kernels: auto then uses them)",
        description="Build res2net.cpu_training's C++ kernels with the system's C++ compiler into $RES2NET_HOME "
        "(about 20 s on 2 cores). Training with cpu_kernels: auto (the default) uses them once built.",
    )
    parser.set_defaults(handler=lazy_handler("res2net.cpu_training.kernels:run_build_kernels"))
    return parser
