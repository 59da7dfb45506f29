"""One round of the loop: a teacher labels a pool of videos, the gate filters, a student trains and is scored.

``run_round`` goes through five steps, each of which a rerun skips once it is done:

1. label: caption, dense, ground, verify and tasks with the teacher over the pool's videos (the caller
   passes ``label``, which runs the pipeline's stages; they skip what is written, so a kill loses nothing);
2. mix: the round's mixture ``<data>/mixtures/round-<N>`` by a mix recipe, its filter joined with the round's:
   ground truth, and the teacher's own samples (with the gate on, only those whose grounding record passed
   it; without labelling, ground truth only); the held-out videos never;
3. train: the student, by a training recipe, from the base model or the teacher, in
   ``<data>/loop/round-<N>/student`` (resumed from its last checkpoint after a kill);
4. eval: the student on the fixed held-out set ``<data>/loop/heldout`` (ground truth of the ``heldout``
   videos, written by the first round and read by every later one, so rounds are compared on the same samples);
5. the ``rounds`` row: teacher, student, mixture, pool, the gate's pass rates (and its precision and recall
   where truth hidden from the round is at hand), the scores, the time of each step.

A round whose row exists is skipped. Each finished step is noted in ``<data>/loop/round-<N>/steps.json``
with its time, so a rerun after a kill resumes at the first unfinished step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from curation import CODE_VERSION
from curation.atomic import atomic_write_text
from curation.domains import EVAL_ONLY_DOMAINS
from curation.store import Dataset
from curation.typed_config import parse_overrides
from mixtures.balance import read_manifest
from model.loader import model_key, model_revision

STEPS = ("label", "mix", "train", "eval")


@dataclass
class RoundConfig:
    """What one round runs; each field's ``help`` is its meaning (and its flag of `densevid round`)."""

    data: str = field(metadata={"help": "dataset folder"})
    teacher: str = field(metadata={"help": "the model that labels the pool: hub id, checkpoint or adapter folder"})
    round: int = field(metadata={"help": "round number; a finished round is skipped"})
    pool: str = field(default="split = 'train'", metadata={
        "help": "SQL condition over the videos table's columns and `split` choosing the videos the teacher labels"})
    gate: bool = field(default=True, metadata={
        "help": "train only on grounding records the gate passed (off: every well-formed record of the teacher)"})
    mix_recipe: str = field(default="natural", metadata={"help": "mixture recipe (preset or YAML)"})
    mix: tuple[str, ...] = field(default=(), metadata={"help": "key=value overrides of the mixture recipe"})
    train_recipe: str = field(default="lora", metadata={"help": "training recipe (preset or YAML)"})
    train: tuple[str, ...] = field(default=(), metadata={"help": "key=value overrides of the training recipe"})
    student_init: str = field(default="base", metadata={
        "help": "base (the base model) or teacher (the teacher's full weights)"})
    base: str = field(default="", metadata={
        "help": "the base model (default: an adapter teacher's base, else the first round's teacher)"})
    heldout: str = field(default="split = 'test'", metadata={
        "help": "SQL condition over the videos table's columns and `split` choosing the held-out videos, whose "
                "ground truth the students are scored on (fixed by the first round; never in a round's mixture)"})
    label: bool = field(default=True, metadata={
        "help": "label the pool with the teacher (off: train on ground truth only, e.g. round 0 from a seed)"})
    eval_max_samples: int = field(default=200, metadata={"help": "most held-out samples per task"})
    eval_dense_tokens: int = field(default=512, metadata={
        "help": "token budget of a held-out dense caption (0: dense captions are not scored)"})
    eval_frames: int = field(default=64, metadata={"help": "most frames per held-out sample (as --sample-frames)"})
    truth_dir: str = field(default="", metadata={
        "help": "folder of truth JSON hidden from the round (<video stem>.json): measures the gate"})

    def problems(self) -> list[str]:
        out = []
        if self.round < 0:
            out.append(f"--round {self.round} must be >= 0")
        if self.student_init not in ("base", "teacher"):
            out.append(f"--student-init {self.student_init!r}: choose base or teacher")
        if not Path(self.data).is_dir():
            out.append(f"--data {self.data}: no such dataset folder (build one with `densevid run`)")
        if self.truth_dir and not Path(self.truth_dir).is_dir():
            out.append(f"--truth-dir {self.truth_dir}: no such folder")
        if self.eval_frames < 2 or self.eval_frames % 2:
            out.append(f"--eval-frames {self.eval_frames} must be even and >= 2")
        if self.eval_dense_tokens < 0:
            out.append(f"--eval-dense-tokens {self.eval_dense_tokens} must be >= 0 (0: no dense scores)")
        if self.eval_max_samples < 1:
            out.append(f"--eval-max-samples {self.eval_max_samples} must be >= 1")
        return out


Label = Callable[[str, frozenset, bool], list]  # (teacher, pool video ids, include rejected) -> stages' Stats


def round_dir(ds: Dataset, n: int) -> Path:
    return ds.root / "loop" / f"round-{n}"


def heldout_dir(ds: Dataset) -> Path:
    return ds.root / "loop" / "heldout"


def finished_round(ds: Dataset, n: int) -> dict | None:
    rows = ds.sql('SELECT * FROM rounds WHERE "round" = ?', [n]).to_pylist()
    return rows[0] if rows else None


def run_round(cfg: RoundConfig, label: Label, log=print) -> dict:
    """The round's row in ``rounds``, after running whatever of it is not done (see the module doc)."""
    problems = cfg.problems()
    if problems:
        raise ValueError("bad round options:\n  " + "\n  ".join(problems))
    ds = Dataset(cfg.data)
    done = finished_round(ds, cfg.round)
    if done:
        if done["teacher"] != model_key(cfg.teacher):
            raise ValueError(f"round {cfg.round} was finished with teacher {done['teacher']}, not "
                             f"{model_key(cfg.teacher)}; pick another --round")
        log(f"round {cfg.round} already finished: student {done['student']}")
        return done
    out = round_dir(ds, cfg.round)
    out.mkdir(parents=True, exist_ok=True)
    steps = _read_steps(out)
    pool = pool_videos(ds, cfg.pool, "--pool") if cfg.label else []
    if cfg.label and not pool:
        raise ValueError(f"--pool {cfg.pool!r} chooses no video; `densevid sql --data {ds.root} "
                         "\"SELECT domain, count(*) FROM videos GROUP BY ALL\"` shows what there is")
    teacher = model_key(cfg.teacher)
    log(f"round {cfg.round}: teacher {teacher}, " + (f"{len(pool)} pool videos" if cfg.label else "no labelling"))
    if cfg.label:
        _step(steps, out, "label", lambda: label_failures(label(cfg.teacher, frozenset(pool), not cfg.gate)), log)
    heldout = ensure_heldout(ds, cfg.heldout, base_model(cfg, ds), cfg.eval_frames)
    held_ids = sorted({r["video_id"] for r in read_manifest(heldout, ["video_id"])})
    mixture = _step(steps, out, "mix", lambda: str(build_round_mixture(ds, cfg, held_ids)), log)
    student = out / "student"
    _step(steps, out, "train", lambda: str(train_student(cfg, ds, mixture, student, log)), log)
    scores = _step(steps, out, "eval", lambda: evaluate_student(cfg, ds, student, heldout, out / "eval"), log)
    row = round_row(cfg, ds, pool, mixture, student, scores, steps)
    ds.write("rounds", [row])
    ds.refresh_catalog()
    return row


def label_failures(results) -> dict:
    """What the label step keeps of its stages' stats: how many items failed (they are `failures` rows)."""
    return {"failed": sum(r.n_failed for r in results or [])}


def _step(steps: dict, out: Path, name: str, run: Callable, log):
    """Run a step unless steps.json says it finished; note its result and time when it does."""
    if name in steps:
        log(f"  {name}: done before ({steps[name]['seconds']:.0f} s)")
        return steps[name]["result"]
    t0 = time.perf_counter()
    result = run()
    steps[name] = dict(result=result if isinstance(result, (str, dict)) else None, seconds=time.perf_counter() - t0)
    _write_steps(out, steps)
    log(f"  {name}: {steps[name]['seconds']:.0f} s")
    return steps[name]["result"]


def _read_steps(out: Path) -> dict:
    path = out / "steps.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_steps(out: Path, steps: dict) -> None:
    atomic_write_text(out / "steps.json", json.dumps(steps, indent=1, default=str))


# --- pool and held-out set ------------------------------------------------------------------------------


def video_splits(ds: Dataset) -> dict[str, str]:
    """Each video's split, stored now for those not assigned yet: a pool or held-out set chosen by split must
    be the split the tasks stage later writes their samples to (a plan over other videos could differ)."""
    from curation.splits import assign_splits

    return assign_splits(ds, [v["video_id"] for v in ds.rows("videos", ["video_id"])])


def pool_videos(ds: Dataset, condition: str, flag: str = "--pool", eval_only: bool = False) -> list[str]:
    """Video ids matching ``condition`` (SQL over the videos table and ``split``); eval-only videos (needle
    haystacks, whose samples are all in ``test``) only with ``eval_only``; ``flag`` names the option in errors."""
    import duckdb
    import pyarrow as pa

    if ";" in condition:
        raise ValueError(f"{flag} {condition!r} is one SQL condition (what follows WHERE); remove the ';'")
    videos = ds.read("videos")
    splits = video_splits(ds)
    split = [("test" if d in EVAL_ONLY_DOMAINS else splits[v]) for v, d in
             zip(videos.column("video_id").to_pylist(), videos.column("domain").to_pylist())]
    videos = videos.append_column("split", pa.array(split, pa.string()))
    con = duckdb.connect()
    try:
        con.register("videos", videos)
        rows = con.execute(f"SELECT video_id FROM videos WHERE (? OR NOT list_contains(?, domain)) AND ({condition}) "
                           "ORDER BY video_id", [eval_only, list(EVAL_ONLY_DOMAINS)]).fetchall()
    except duckdb.Error as e:
        raise ValueError(f"{flag} {condition!r}: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
    return [r[0] for r in rows]


def ensure_heldout(ds: Dataset, condition: str, processor_model: str, frames: int = 64) -> Path:
    """The fixed held-out set, written once: for every video ``condition`` chooses, a temporal-grounding sample
    per ground-truth record and a dense-caption sample whose answer is the truth's events (scored against the
    truth, whatever model captioned the video), plus the stored needle samples of the haystacks it chooses. It
    needs no model's captions, so held-out videos are never labelled."""
    import pyarrow as pa

    from curation.store import atomic_write_parquet

    out = heldout_dir(ds)
    if (out / "manifest.parquet").exists():
        return out
    rows = heldout_samples(ds, pool_videos(ds, condition, "--heldout", eval_only=True), processor_model, frames)
    if not rows:
        raise ValueError(f"--heldout {condition!r}: no held-out sample, as no video it chooses has ground truth "
                         "(generated truth JSON or `densevid import`); choose other videos")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(pa.Table.from_pylist(rows), out / "manifest.parquet")
    atomic_write_text(out / "about.json", json.dumps({"dataset": str(ds.root), "heldout": condition,
                                                      "samples": len(rows)}, indent=1))
    return out


def heldout_samples(ds: Dataset, video_ids: list[str], processor_model: str, frames: int) -> list[dict]:
    from curation.executors import RunOptions, run_stage
    from curation.frames import FramePolicy
    from synth.dense import render_dense
    from synth.grounding import GroundTruthStage
    from synth.tasks import DENSE_PROMPT, BUILDERS, Draft, TasksStage, VideoRows

    split_of = video_splits(ds)
    ids = frozenset(video_ids)
    videos = [v for v in ds.rows("videos") if v["video_id"] in ids and v["domain"] not in EVAL_ONLY_DOMAINS]
    run_stage(GroundTruthStage(), ds, progress=False, options=RunOptions(videos=ids))
    truth = {}
    for g in ds.sql("SELECT * FROM grounding WHERE source = 'ground_truth' AND list_contains(?, video_id) "
                    "ORDER BY video_id, start_s, phrase, record_id", [sorted(ids)]).to_pylist():
        truth.setdefault(g["video_id"], []).append(g)
    builder = TasksStage(model_id=processor_model, frames=FramePolicy(max_frames=frames))
    builder.setup(ds)  # its processor counts the samples' tokens
    rows = []
    for v in videos:
        records = truth.get(v["video_id"], [])
        drafts = BUILDERS["temporal_grounding"](VideoRows(v, grounding=records))
        if records:
            events = [dict(start_s=g["start_s"], end_s=g["end_s"], summary=f"{g['phrase']} {g['action']}")
                      for g in records]
            drafts.append(Draft("dense_caption", "truth", DENSE_PROMPT, render_dense(events, details=False)))
        rows += [builder.sample(v, d, split=split_of[v["video_id"]]) for d in drafts]
    needles = ds.sql("SELECT * FROM samples WHERE task = 'needle' AND list_contains(?, video_id) ORDER BY sample_id",
                     [sorted(ids)]).to_pylist()
    return rows + needles


# --- mixture, student, scores ---------------------------------------------------------------------------


def round_filter(teacher: str, gate: bool) -> str:
    """Samples a round trains on: ground truth, and the teacher's own samples (gated: only those whose
    grounding record passed; samples from captions have no record and pass)."""
    quoted = "'" + teacher.replace("'", "''") + "'"
    admitted = "coalesce(passed_gate, true)" if gate else "true"
    return f"(origin = 'ground_truth' OR (model = {quoted} AND {admitted}))"


def build_round_mixture(ds: Dataset, cfg: RoundConfig, heldout_videos: list[str]) -> Path:
    """The recipe's mixture with the round's filter; the held-out videos never enter it."""
    from mixtures.balance import build_mixtures
    from mixtures.recipe import load_mix_recipe

    recipe = load_mix_recipe(cfg.mix_recipe, parse_overrides(list(cfg.mix)))
    own = round_filter(model_key(cfg.teacher), cfg.gate) if cfg.label else "origin = 'ground_truth'"
    if heldout_videos:
        own += " AND NOT list_contains([" + ", ".join(f"'{v}'" for v in heldout_videos) + "], video_id)"
    recipe.filter = f"({recipe.filter}) AND {own}" if recipe.filter else own
    recipe.name, recipe.holdout = f"round-{cfg.round}", ()
    return build_mixtures(ds, recipe)[0].path


def base_model(cfg: RoundConfig, ds: Dataset) -> str:
    """The base: given, else an adapter teacher's base, else the first round's teacher, else the teacher."""
    if cfg.base:
        return cfg.base
    adapter = Path(cfg.teacher) / "adapter_config.json"
    if adapter.exists():
        return json.loads(adapter.read_text())["base_model_name_or_path"]
    first = ds.sql('SELECT teacher FROM rounds ORDER BY "round" LIMIT 1').column("teacher").to_pylist()
    return first[0] if first else cfg.teacher


def student_start(cfg: RoundConfig, ds: Dataset) -> str:
    if cfg.student_init == "base":
        return base_model(cfg, ds)
    if (Path(cfg.teacher) / "adapter_config.json").exists():
        raise ValueError(f"--student-init teacher needs the teacher's full weights, and {cfg.teacher} is a LoRA "
                         "adapter: fold it in first (`densevid merge-lora ADAPTER OUT`) and pass OUT as --teacher")
    return cfg.teacher


def train_student(cfg: RoundConfig, ds: Dataset, mixture: str, out: Path, log) -> Path:
    from finetune.config import load_config
    from finetune.train import train

    overrides = parse_overrides(list(cfg.train) + [f"model={student_start(cfg, ds)}", f"mixture={mixture}",
                                                   f"output_dir={out}", "resume=auto"])
    train(load_config(cfg.train_recipe, overrides), log=log)
    return out


def evaluate_student(cfg: RoundConfig, ds: Dataset, student: Path, heldout: Path, out: Path) -> dict:
    from finetune.evaluate import EvalConfig, run_eval

    report = run_eval(EvalConfig(model=str(student), mixture=str(heldout), data=str(ds.root), out=str(out),
                                 max_samples=cfg.eval_max_samples, dense_captions=cfg.eval_dense_tokens > 0,
                                 dense_max_new_tokens=max(1, cfg.eval_dense_tokens)))
    return brief_scores(report)


def brief_scores(report: dict) -> dict:
    """Every summary score of an eval report, without the per-item lists."""
    return {k: {kk: vv for kk, vv in v.items() if kk != "items"} for k, v in report.items()
            if isinstance(v, dict) and k != "config"}


# --- the row ----------------------------------------------------------------------------------------------


def gate_rates(ds: Dataset, teacher: str, pool: list[str]) -> dict:
    """Records of the teacher over the pool, the share its verdicts passed, and the share per check."""
    from synth.verify import CHECKS

    checks = ", ".join(f"avg(v.{c}_ok::int) AS {c}" for c in CHECKS)
    row = ds.sql(
        f"SELECT count(*) AS records, count(v.record_id) AS verdicts, avg(v.passed::int) AS passed, {checks} "
        "FROM grounding g LEFT JOIN verdicts v ON v.record_id = g.record_id AND v.model = g.model "
        "WHERE g.source = 'model' AND g.model = ? AND list_contains(?, g.video_id)", [teacher, pool]).to_pylist()[0]
    return dict(records=row["records"], verdicts=row["verdicts"], passed=row["passed"],
                checks={c: row[c] for c in CHECKS})


def gate_against_truth(ds: Dataset, teacher: str, truth_dir: str) -> dict | None:
    """The gate's precision and recall against truth the round did not see; None without any truth."""
    from synth.gate_eval import gate_scores, load_gate_inputs

    records, verdicts, truth = load_gate_inputs(ds, teacher, truth_dir or None)
    if not truth or not verdicts:
        return None
    return gate_scores(records, verdicts, truth)


def mixture_counts(mixture: str) -> dict:
    origins = [r["origin"] for r in read_manifest(mixture, ["origin"])]
    model = origins.count("model")
    return dict(samples=len(origins), model=model, truth=len(origins) - model)


def round_row(cfg: RoundConfig, ds: Dataset, pool: list[str], mixture: str, student: Path, scores: dict,
              steps: dict) -> dict:
    teacher = model_key(cfg.teacher)
    gate = gate_rates(ds, teacher, pool)
    truth = gate_against_truth(ds, teacher, cfg.truth_dir)
    counts = mixture_counts(mixture)
    grounding, dense = scores.get("grounding", {}), scores.get("dense_caption", {})
    needle = scores.get("needle_dataset", {})
    return dict(
        round=cfg.round, teacher=teacher, teacher_revision=model_revision(cfg.teacher), student=str(student),
        student_revision=model_revision(student), student_init=student_start(cfg, ds), mixture=mixture,
        pool=cfg.pool, pool_videos=len(pool), label_failures=(steps.get("label", {}).get("result") or {}).get("failed"),
        records=gate["records"], gate="on" if cfg.gate else "off",
        gate_pass_rate=gate["passed"], gate_check_rates=json.dumps(gate["checks"]),
        gate_truth=json.dumps(truth) if truth else None, mixture_samples=counts["samples"],
        model_samples=counts["model"], truth_samples=counts["truth"], grounding_miou=grounding.get("miou"),
        grounding_r05=grounding.get("r@0.5"), dense_f1_05=dense_f1(dense), needle_accuracy=needle.get("accuracy"),
        eval=json.dumps(scores, default=str), **{f"{s}_s": steps.get(s, {}).get("seconds") for s in STEPS},
        finished_at=time.time(), config=json.dumps(asdict(cfg), default=str), code_version=CODE_VERSION,
    )


def dense_f1(summary: dict) -> float | None:
    """F1 of event detection at tIoU 0.5 from a dense-caption summary (None when nothing was scored)."""
    if not summary.get("n"):
        return None
    return summary["by_tiou"]["0.5"]["f1"]
