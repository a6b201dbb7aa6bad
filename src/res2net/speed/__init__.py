"""Side-by-side speed measurement: ours against timm (and onnxruntime) in one process.

What ``res2net benchmark`` prints and what the scripts in ``benchmarks/`` call. timm, the
outside reference, is needed only when a benchmark runs (the ``bench`` extra).
"""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "add_benchmark_parser": "cli",
    "run_benchmark": "cli",
    "inference_contenders": "contenders",
    "randomise_batchnorm": "contenders",
    "require_timm": "contenders",
    "train_step_contenders": "contenders",
    "Contenders": "timing",
    "Timing": "timing",
    "format_table": "timing",
    "interleaved": "timing",
    "peak_rss_mib": "timing",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
