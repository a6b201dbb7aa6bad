"""Side-by-side speed measurement: ours against timm (and onnxruntime) in one process.

What ``res2net benchmark`` prints and what the scripts in ``benchmarks/`` call. timm, the
outside reference, is needed only when a benchmark runs (the ``bench`` extra).
"""

from .cli import add_benchmark_parser, run_benchmark
from .contenders import inference_contenders, randomise_batchnorm, require_timm, train_step_contenders
from .timing import Contenders, Timing, format_table, interleaved, peak_rss_mib

__all__ = [
    "Contenders",
    "Timing",
    "add_benchmark_parser",
    "format_table",
    "inference_contenders",
    "interleaved",
    "peak_rss_mib",
    "randomise_batchnorm",
    "require_timm",
    "run_benchmark",
    "train_step_contenders",
]
