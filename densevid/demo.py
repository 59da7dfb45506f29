"""`densevid demo`: generated videos -> dataset -> mixture -> LoRA -> caption with the adapter, offline."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from rich.columns import Columns
from rich.panel import Panel
from rich.table import Table

from curation.progress import stderr_is_terminal
from curation.times import render_span
from densevid.summary import console, print_balance, print_stage_summary, section


TEACHER_TASKS = ("segment_grounding", "temporal_grounding")  # the ground stage's question and the cycle question


def run_demo(out: Path, train_steps: int = 12, teacher_steps: int = 150, progress: bool = True) -> int:
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
    from synth.grounding import GroundTruthStage
    from synth.videos import make_corpus

    if train_steps < 1 or teacher_steps < 1:
        raise ValueError(f"--train-steps {train_steps} and --teacher-steps {teacher_steps} must be >= 1")
    t0 = time.perf_counter()
    out = Path(out).resolve()
    videos, data = out / "videos", out / "dataset"
    section("1/7 generating videos")
    paths = make_corpus(videos)
    console.print(f"{len(paths)} videos with ground truth JSON under {videos}")
    section("2/7 building the tiny Qwen3-VL checkpoint")
    model_dir = build_tiny_checkpoint(out / "tiny-qwen3-vl")
    console.print(f"checkpoint: {model_dir}")
    section("3/7 ingest -> split -> caption -> dense -> tasks (ground and verify: step 6, by a teacher)")
    cfg = PipelineConfig(data=data, videos=videos, model=str(model_dir), caption_frames=8, sample_frames=16,
                         batch_size=4, max_new_tokens=512, needle=True)
    # the random model's grounding is noise that costs minutes: only the ground truth's records here; a
    # teacher that has learned grounds in step 6
    results = run_pipeline(cfg, stages=("ingest", "split", "quality", "dedup", "caption", "dense"), progress=progress)
    results.append(run_stage(GroundTruthStage(), Dataset(data), progress=progress))
    results += run_pipeline(cfg, stages=("tasks",), progress=progress)
    print_stage_summary(results, Dataset(data))
    section("4/7 domain-balanced mixture")
    ds = Dataset(data)
    mixture = build_mixture(ds, load_mix_recipe("balanced"))
    report = balance_report(mixture)
    section("5/7 LoRA fine-tune")
    adapter = out / "runs" / "lora"
    items = demo_train_items(model_dir, mixture, adapter, train_steps)
    console.print("densevid train lora " + " ".join(items), soft_wrap=True, markup=False, highlight=False)
    result = train(load_config("lora", parse_overrides(items)), log=console.print)
    section("6/7 a grounding teacher that has learned, and the gate on its records")
    teacher = train_teacher(ds, model_dir, out / "runs" / "teacher", teacher_steps)
    gated = run_pipeline(replace(cfg, model=str(teacher)), stages=("ground", "verify", "tasks"), progress=progress)
    print_stage_summary(gated, ds)
    gate = print_gate(ds, str(teacher))
    section("7/7 caption one segment with the adapter")
    stage = CaptionStage(model_id=str(adapter), frames=cfg_frames(cfg), decoding=Decoding(max_new_tokens=512))
    run_stage(stage, ds, progress=False, max_items=1)
    tuned = ds.sql("SELECT segment_id, summary FROM captions WHERE model = ? LIMIT 1", [str(adapter)]).to_pylist()
    _summary(ds, TABLES, report, mixture, adapter, result, tuned, f"{teacher}   {gate}", time.perf_counter() - t0)
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


def train_teacher(ds, model_dir: Path, teacher: Path, steps: int) -> Path:
    """The `world` preset, fully fine-tuned on the ground truth of the ground stage's and the gate's own
    questions: enough for the tiny model to answer in their form, so the gate has records to judge."""
    from curation.typed_config import parse_overrides
    from finetune.config import load_config
    from finetune.train import train
    from mixtures.balance import build_mixture
    from mixtures.recipe import load_mix_recipe

    mixture = build_mixture(ds, load_mix_recipe("natural", {"name": "teacher", "tasks": list(TEACHER_TASKS)}))
    items = demo_teacher_items(model_dir, mixture, teacher, steps)
    console.print("densevid train world " + " ".join(items), soft_wrap=True, markup=False, highlight=False)
    train(load_config("world", parse_overrides(items)), log=console.print)
    return teacher


def demo_teacher_items(model_dir: Path, mixture: Path, teacher: Path, steps: int) -> list[str]:
    """The teacher's fine-tune as `densevid train world` overrides (the README repeats them)."""
    return [f"model={model_dir}", f"mixture={mixture}", f"output_dir={teacher}", f"max_steps={steps}",
            "data.max_frames=8", f"log_every={max(1, steps // 6)}"]


def print_gate(ds, model: str) -> str:
    """What the gate made of the teacher's records: passes and failures per check, and one record's reasons;
    returns the first line."""
    rows = ds.sql("SELECT count(*) AS records, count(*) FILTER (passed) AS passed, "
                  "count(*) FILTER (NOT form_ok) AS form, count(*) FILTER (NOT caption_ok) AS caption, "
                  "count(*) FILTER (NOT cycle_ok) AS cycle, count(*) FILTER (NOT unique_ok) AS \"unique\" "
                  "FROM verdicts WHERE model = ?", [model]).to_pylist()[0]
    failed = ", ".join(f"{c} {rows[c]}" for c in ("form", "caption", "cycle", "unique"))
    line = f"gate: {rows['passed']} of {rows['records']} records passed; failed per check: {failed}"
    console.print(line)
    example = ds.sql("SELECT g.phrase, g.action, g.start_s, g.end_s, len(g.boxes) AS n, v.passed, v.reasons "
                     "FROM verdicts v JOIN grounding g USING (record_id) WHERE v.model = ? "
                     "ORDER BY v.passed DESC, len(v.reasons), g.record_id LIMIT 1", [model]).to_pylist()
    for r in example:
        verdict = "passed" if r["passed"] else "rejected: " + "; ".join(r["reasons"])
        console.print(f"  {r['phrase']} {r['action']} {render_span(r['start_s'], r['end_s'])}, {r['n']} boxes: "
                      f"{verdict}", soft_wrap=True, markup=False, highlight=False)
    console.print("  every record's verdict and boxes: the report's video pages, or  densevid sql --data "
                  f"{ds.root} \"SELECT passed, reasons FROM verdicts\"", soft_wrap=True, markup=False, highlight=False)
    return line


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


def _summary(ds, tables, report, mixture, adapter, result, tuned, teacher, seconds) -> None:
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
        f"teacher      {teacher}",
        f"took         {seconds:.0f} s",
        "",
        "try:  .venv/bin/densevid sql --data " + str(ds.root)
        + ' "SELECT domain, count(*) AS videos, round(sum(duration_s), 1) AS seconds FROM videos GROUP BY domain"',
    ]
    console.print(Panel("\n".join(lines), title="densevid demo", expand=console.is_terminal))
