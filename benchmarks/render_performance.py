"""Render ``docs/performance.md`` and the README's speed table from the newest rows in ``benchmarks/results/``.

Figures are data: every benchmark appends a JSON row (date, commit, host, versions, command, figures) to
``benchmarks/results/<name>.jsonl``; this script turns the newest row of each kind of run into a table,
naming the machine, the commit, the date and the command that made it. ``tests/test_performance_page.py``
fails when the committed page or README table is not what the rows render.

    python benchmarks/render_performance.py           # rewrite docs/performance.md and the README table
    python benchmarks/render_performance.py --check   # exit 1 if either is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "performance.md"
README = ROOT / "README.md"
README_START = "<!-- speed: rendered by benchmarks/render_performance.py -->\n"
README_END = "<!-- /speed -->"
Row = dict[str, Any]

INTRO = """# Performance

Rendered by `python benchmarks/render_performance.py` from the newest rows in `benchmarks/results/` (one JSON line
per run: date, commit, host, library versions, the exact command, the figures); a test fails when this page is not
what the rows render. Each table names the machine and the command that made it: figures from different machines
are not comparable, and a machine's speed drifts between runs, so ratios measured in one interleaved run are what
to compare. Earlier runs are the older rows of the same files, and `docs/history/` keeps the figures of 0.1.0's
README with their commands.
"""


def read_rows(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def native_bf16(row: Row) -> bool:
    """Whether the row's CPU multiplies bf16 in hardware; elsewhere bf16 is emulated and says nothing of bf16."""
    return bool({"avx512_bf16", "amx_bf16"} & set(row["host"].get("cpu_flags") or []))


def provenance(row: Row) -> str:
    host = row["host"]
    flags = ", ".join(host.get("cpu_flags") or []) or "no AVX2"
    if "bf16" in json.dumps(row["figures"]) and not native_bf16(row):
        flags += "; no native bf16, so bf16 figures measure emulation"
    versions = ", ".join(f"{k} {v}" for k, v in row["versions"].items() if k in ("torch", "timm", "openvino"))
    return (f"{row['date'][:10]}, commit `{row['commit']}`, {host['cpu']} ({host['logical_cpus']} CPUs; {flags}), "
            f"{versions}:\n`{row['command']}`")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def render_cpu_training(row: Row) -> str:
    body = []
    for setting, variants in row["figures"].items():
        size, batch, precision = setting.split("_")
        cells = [f"{v['img_per_s']:.2f} ({v['over_plain']:.2f}x)" for v in variants.values()]
        body.append([size.removesuffix("px") + " px", batch.removeprefix("b"), precision, *cells])
    names = list(next(iter(row["figures"].values())))
    return ("What each piece of `res2net.cpu_training` buys on res2net50's training step (img/s, and the ratio to the "
            "plain model in the same interleaved run):\n\n" + table(["input", "batch", "precision", *names], body))


def render_train_vs_timm(row: Row) -> str:
    figures = row["figures"]
    body = []
    for batch, by_precision in figures["train"].items():
        for precision, summary in by_precision.items():
            rates, ratios = summary["img_per_s"], summary["ratios"]
            body.append([f"{figures['image_size']} px", batch, precision] +
                        [f"{rates[name]:.2f} ({ratios[name]:.2f}x)" for name in rates])
    names = list(next(iter(next(iter(figures["train"].values())).values()))["img_per_s"])
    return (f"One training step, ours against timm (img/s and the ratio to timm's own loop; `cpu_kernels: "
            f"{figures.get('cpu_kernels', 'fused')}`, host memory {figures['host_memory']}):\n\n"
            + table(["input", "batch", "precision", *names], body))


def render_serve_memory(row: Row) -> str:
    figures, settings = row["figures"], row["settings"]
    served = "another checkout's server (`" + str(settings.get("server_commit")) + "`)" if settings.get(
        "server_pythonpath") else "this commit's server"
    flags = " ".join(settings.get("serve_flags") or []) or "default flags"
    responses = ", ".join(f"{r['status']} in {r['seconds']} s" for r in figures["responses"])
    return table(["server", "flags", "request", "answer", "RSS before -> after (peak)", "growth"], [[
        served, flags, f"{settings['images']} x 8x8 PNG, {settings['concurrent']} at once", responses,
        f"{figures['rss_before_mib']} -> {figures['rss_after_mib']} MiB ({figures['rss_peak_mib']})",
        f"{figures['rss_growth_mib']} MiB"]])


def render_commits(row: Row) -> str:
    settings = row["settings"]
    body = [[name, f"{v['img_per_s']:.2f}", f"{v['over_timm']:.2f}x"] for name, v in row["figures"].items()]
    return (f"Our training step at two commits and timm's, in one interleaved run ({settings['image_size']} px, batch "
            f"{settings['batch_size']}, {settings['precision']}, {settings['rounds']} rounds):\n\n"
            + table(["contender", "img/s", "against timm"], body))


def render_transfer(row: Row) -> str:
    body = []
    for k, by_start in row["figures"].items():
        cells = [f"{v['mean']:.2f} +- {v['stdev']:.2f} ({', '.join(f'{t:.1f}' for t in v['top1'])})"
                 for v in by_start.values()]
        body.append([k.removeprefix("k="), *cells])
    starts = list(next(iter(row["figures"].values())))
    flags = " ".join(row["settings"].get("finetune_flags") or []) or "the recipe as it is"
    against = ", against the same command with `--weights none`" if "from scratch" in starts else ""
    return (f"res2net50 pretrained on the digits 0-4, then `res2net finetune` on k images per class of the digits "
            f"5-9 ({flags}){against}; final validation top-1 % on all the new digits' validation images, mean +- "
            f"standard deviation over seeds (each seed):\n\n" + table(["k per class", *starts], body))


def render_generic(row: Row) -> str:
    flat: list[list[str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat.append([prefix, json.dumps(value)])

    walk("", row["figures"])
    return table(["figure", "value"], flat)


#: file stem -> (section title, what distinguishes rows that are not newer runs of the same thing, renderer)
SECTIONS: dict[str, tuple[str, Callable[[Row], str], Callable[[Row], str]]] = {
    "train_vs_timm": ("Training step against timm",
                      lambda r: f"{r['figures']['image_size']} {sorted(r['figures']['train'])}",
                      render_train_vs_timm),
    "cpu_training": ("CPU-training pieces", lambda r: json.dumps(sorted(r["figures"])), render_cpu_training),
    "commits": ("Training step, before and after a change",
                lambda r: json.dumps([r["settings"][k] for k in ("image_size", "batch_size", "precision")]),
                render_commits),
    "transfer": ("Fine-tuning against training from scratch",
                 lambda r: json.dumps([r["settings"].get("finetune_flags"),
                                       r["settings"].get("starts", ["fine-tuned", "from scratch"])]),
                 render_transfer),
    "serve_memory": ("Server memory under one oversized request",
                     lambda r: json.dumps([r["settings"].get(k) for k in ("serve_flags", "server_pythonpath",
                                                                          "images", "concurrent")]),
                     render_serve_memory),
}


def newest(rows: list[Row], key: Callable[[Row], str]) -> list[Row]:
    """The newest row of each kind (rows are appended, so the last of each key), in first-seen order."""
    latest: dict[str, Row] = {}
    for row in rows:
        latest.pop(key(row), None)
        latest[key(row)] = row
    return sorted(latest.values(), key=lambda r: rows.index(r))


def render_page() -> str:
    parts = [INTRO]
    for path in sorted(RESULTS.glob("*.jsonl")):
        title, key, render = SECTIONS.get(path.stem, (path.stem.replace("_", " ").capitalize(), lambda r: "",
                                                      render_generic))
        parts.append(f"## {title}\n")
        for row in newest(read_rows(path), key):
            parts.append(f"{provenance(row)}\n\n{render(row)}\n")
    return "\n".join(parts)


def render_readme_table() -> str:
    """The README's short table: our training step against timm, from the newest rows (bf16 only from a CPU
    with native bf16; the page keeps every row, with the machine each ran on: the README names no hosts)."""
    path = RESULTS / "train_vs_timm.jsonl"
    body = []
    rows = newest(read_rows(path), SECTIONS["train_vs_timm"][1]) if path.exists() else []
    for row in rows:
        figures = row["figures"]
        for batch, by_precision in figures["train"].items():
            for precision, summary in by_precision.items():
                if precision == "bf16" and not native_bf16(row):
                    continue
                ours = next(name for name in summary["ratios"] if name.startswith("ours"))
                body.append([f"train step, {figures['image_size']} px, batch {batch}, {precision}",
                             f"{summary['img_per_s'][ours]:.2f} img/s", f"{summary['ratios'][ours]:.2f}x timm"])
    return table(["what", "ours", "against"], body) + "\n"


def replace_readme_table(text: str, rendered: str) -> str:
    if README_START not in text or README_END not in text:
        raise SystemExit(f"README.md lacks the markers {README_START.strip()} ... {README_END}")
    head, rest = text.split(README_START, 1)
    return head + README_START + rendered + README_END + rest.split(README_END, 1)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page or the README table is stale")
    args = parser.parse_args()
    page = render_page()
    readme = replace_readme_table(README.read_text(encoding="utf-8"), render_readme_table())
    if args.check:
        stale = [p.name for p, text in ((PAGE, page), (README, readme)) if p.read_text(encoding="utf-8") != text]
        if stale:
            print(f"stale: {', '.join(stale)} (run python benchmarks/render_performance.py)", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    README.write_text(readme, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
