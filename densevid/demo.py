"""`densevid demo`: generated videos -> dataset -> mixture -> LoRA -> caption with the adapter, offline."""

from __future__ import annotations

import time
from pathlib import Path

from rich.columns import Columns
from rich.panel import Panel
from rich.table import Table

from curation.progress import stderr_is_terminal
from curation.times import render_span
from densevid.summary import console, print_balance, print_stage_summary, section


def run_demo(out: Path, train_steps: int = 12, progress: bool = True) -> int:
    from curation.executors import run_stage
    from curation.store import TABLES, Dataset
    from curation.typed_config import parse_overrides
    from densevid.pipeline import PipelineConfig, run_pipeline
    from finetune.config import load_config
    from finetune.train import train
    from mixtures.balance import balance_report, build_mixture
    from mixtures.recipe import load_mix_recipe
    from model.structured import Decoding
    from model.tiny import build_tiny_checkpoint
    from report.build import write_report
    from synth.captions import CaptionStage
    from synth.videos import make_corpus

    t0 = time.perf_counter()
    out = Path(out).resolve()
    videos, data = out / "videos", out / "dataset"
    section("1/6 generating videos")
    paths = make_corpus(videos)
    console.print(f"{len(paths)} videos with ground truth JSON under {videos}")
    section("2/6 building the tiny Qwen3-VL checkpoint")
    model_dir = build_tiny_checkpoint(out / "tiny-qwen3-vl")
    console.print(f"checkpoint: {model_dir}")
    section("3/6 ingest -> split -> caption -> dense -> ground -> verify -> tasks")
    cfg = PipelineConfig(data=data, videos=videos, model=str(model_dir), caption_frames=8, sample_frames=16,
                         batch_size=4, max_new_tokens=512, needle=True)
    results = run_pipeline(cfg, progress=progress)
    print_stage_summary(results, Dataset(data))
    section("4/6 domain-balanced mixture")
    ds = Dataset(data)
    mixture = build_mixture(ds, load_mix_recipe("balanced"))
    report = balance_report(mixture)
    section("5/6 LoRA fine-tune")
    adapter = out / "runs" / "lora"
    items = demo_train_items(model_dir, mixture, adapter, train_steps)
    console.print("densevid train lora " + " ".join(items), soft_wrap=True, markup=False, highlight=False)
    result = train(load_config("lora", parse_overrides(items)), log=console.print)
    section("6/6 caption one segment with the adapter")
    stage = CaptionStage(model_id=str(adapter), frames=cfg_frames(cfg), decoding=Decoding(max_new_tokens=512))
    run_stage(stage, ds, progress=False, max_items=1)
    tuned = ds.sql("SELECT segment_id, summary FROM captions WHERE model = ? LIMIT 1", [str(adapter)]).to_pylist()
    _summary(ds, TABLES, report, mixture, adapter, result, tuned, time.perf_counter() - t0)
    section("report")
    site = write_report(data, out / "report", progress=progress and stderr_is_terminal())
    console.print(site.summary(), soft_wrap=True, markup=False, highlight=False)
    console.print(f"open {site.index}", soft_wrap=True, markup=False, highlight=False)
    return 0


def demo_train_items(model_dir: Path, mixture: Path, adapter: Path, steps: int) -> list[str]:
    """The demo's fine-tune as `densevid train lora` overrides: the preset as documented, only its paths, steps
    and logging changed, so the README's command repeats it."""
    return [f"model={model_dir}", f"mixture={mixture}", f"output_dir={adapter}", f"max_steps={steps}",
            f"log_every={max(1, steps // 6)}"]


def cfg_frames(cfg):
    from curation.frames import FramePolicy

    return FramePolicy(max_frames=cfg.caption_frames)


def _examples(ds) -> None:
    dense = ds.sql("SELECT rendered FROM dense_captions ORDER BY video_id LIMIT 1").column("rendered").to_pylist()
    truth = ds.sql("SELECT phrase, action, start_s, end_s, len(boxes) AS n FROM grounding "
                   "WHERE source = 'ground_truth' ORDER BY video_id, start_s LIMIT 1").to_pylist()
    lines = []
    if dense:
        lines.append("dense caption (first entries; the tiny model is random: its words are noise, the times real):")
        lines += ["  " + line[:100] for line in dense[0].splitlines()[:2]]
    if truth:
        g = truth[0]
        lines.append(f"grounding: {g['phrase']} {g['action']} {render_span(g['start_s'], g['end_s'])}, {g['n']} boxes")
    console.print("\n".join(lines))


def _summary(ds, tables, report, mixture, adapter, result, tuned, seconds) -> None:
    section("summary")
    counts = ds.counts()
    t = Table(title="rows per table")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name in tables:
        t.add_row(name, str(counts[name]))
    tasks = Table(title="samples per task")
    tasks.add_column("task")
    tasks.add_column("samples", justify="right")
    for row in ds.sql("SELECT task, count(*) AS n FROM samples GROUP BY task ORDER BY task").to_pylist():
        tasks.add_row(row["task"], str(row["n"]))
    console.print(Columns([t, tasks]))
    print_balance(report)
    _examples(ds)
    losses = result["losses"]
    lines = [
        f"dataset      {ds.root}   (catalog: {ds.catalog_path.name})",
        f"mixture      {mixture}",
        f"adapter      {adapter}   loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps",
        f"tuned caption ({tuned[0]['segment_id'] if tuned else '-'}): {tuned[0]['summary'] if tuned else 'failed'}",
        f"took         {seconds:.0f} s",
        "",
        "try:  .venv/bin/densevid sql --data " + str(ds.root)
        + ' "SELECT domain, count(*) AS videos, round(sum(duration_s), 1) AS seconds FROM videos GROUP BY domain"',
    ]
    console.print(Panel("\n".join(lines), title="densevid demo", expand=console.is_terminal))
