"""The one prepared GPU check (run on a lent accelerator; see README "Speed" for the figures).

1. Train-step img/s, ours against timm in the same loop: AMP bf16 and fp16 + channels_last.
2. Inference img/s of the eager model under bf16 autocast and channels_last.

    python benchmarks/bench_gpu.py --batch-size 128 --rounds 10
"""

from __future__ import annotations

import argparse

import torch

from res2net.metrics import autocast_context
from res2net.models import build_model
from res2net.speed import format_table, interleaved, randomise_batchnorm, train_step_contenders
from res2net.speed.results import add_record_argument, record_if_asked


def inference_contenders(model_name: str, batch: int, size: int) -> dict[str, object]:
    import timm

    reference = timm.create_model(model_name).eval().cuda().to(memory_format=torch.channels_last)
    randomise_batchnorm(reference)
    ours = build_model(model_name).eval().cuda().to(memory_format=torch.channels_last)
    ours.load_state_dict(reference.state_dict())
    images = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)

    def run(model: torch.nn.Module) -> object:
        def call() -> object:
            with torch.inference_mode(), autocast_context(images.device, "bfloat16"):
                return model(images)

        return call

    return {f"timm {model_name} bf16": run(reference), f"ours {model_name} bf16": run(ours)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="res2net50_26w_4s")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    add_record_argument(parser, "gpu")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script is for a GPU machine")
    torch.backends.cudnn.benchmark = True
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, batch {args.batch_size}, 224px")
    figures: dict[str, dict[str, float]] = {"gpu": {torch.cuda.get_device_name(): 1.0}}
    for label, dtype in (("AMP bf16", "bfloat16"), ("AMP fp16", "float16")):
        contenders = train_step_contenders(args.model, args.model, args.batch_size, 224, dtype, device="cuda")
        timings = interleaved(contenders, rounds=args.rounds, items=args.batch_size, warmup=3)
        print(format_table(f"train step, {label}, channels_last:", timings))
        figures[f"train {label}"] = {t.name: round(t.per_second, 1) for t in timings}
    timings = interleaved(inference_contenders(args.model, args.batch_size * 2, 224), rounds=args.rounds,
                          items=args.batch_size * 2, warmup=3)
    print(format_table("inference, bf16 autocast, channels_last:", timings))
    figures["inference bf16"] = {t.name: round(t.per_second, 1) for t in timings}
    print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    record_if_asked(args, figures, {"batch_size": args.batch_size, "rounds": args.rounds})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
