"""One round of the loop: a teacher labels a pool of videos, the gate filters, a student trains and is scored.

``run_round`` goes through five steps, each of which a rerun skips once it is done:

1. label: caption, dense, ground, verify and tasks with the teacher over the pool's videos (the caller
   passes ``label``, which runs the pipeline's stages; they skip what is written, so a kill loses nothing);
2. mix: the round's mixture ``<data>/mixtures/round-<N>`` by a mix recipe, its filter joined with the round's:
   the training split's ground truth, and the teacher's own samples (with the gate on, only those whose
   grounding record passed it);
3. train: the student, by a training recipe, from the base model or the teacher, in
   ``<data>/rounds/round-<N>/student`` (resumed from its last checkpoint after a kill);
4. eval: the student on the fixed held-out set ``<data>/rounds/heldout`` (ground truth of the eval splits,
   written by the first round and read by every later one, so rounds are compared on the same samples);
5. the ``rounds`` row: teacher, student, mixture, pool, the gate's pass rates (and its precision and recall
   where truth hidden from the round is at hand), the scores, the time of each step.

A round whose row exists is skipped. Each finished step is noted in ``<data>/rounds/round-<N>/steps.json``
with its time, so a rerun after a kill resumes at the first unfinished step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from curation import CODE_VERSION
from curation.domains import EVAL_ONLY_DOMAINS
from curation.store import Dataset
from curation.typed_config import parse_overrides
from model.loader import model_key, model_revision

STEPS = ("label", "mix", "train", "eval")
HELDOUT_TASKS = ("temporal_grounding", "dense_caption", "needle")


@dataclass
class RoundConfig:
    """What one round runs; each field's ``help`` is its meaning (and its flag of `densevid round`)."""

    data: str = field(metadata={"help": "dataset folder"})
    teacher: str = field(metadata={"help": "the model that labels the pool: hub id, checkpoint or adapter folder"})
    round: int = field(metadata={"help": "round number; a finished round is skipped"})
    pool: str = field(default="split = 'train'", metadata={
        "help": "SQL condition over the videos table's columns and `split` choosing the videos the teacher labels"})
    gate: bool = field(default=True, metadata={
        "help": "train only on grounding records the gate passed (off: every record of the teacher)"})
    mix_recipe: str = field(default="natural", metadata={"help": "mixture recipe (preset or YAML)"})
    mix: tuple[str, ...] = field(default=(), metadata={"help": "key=value overrides of the mixture recipe"})
    train_recipe: str = field(default="lora", metadata={"help": "training recipe (preset or YAML)"})
    train: tuple[str, ...] = field(default=(), metadata={"help": "key=value overrides of the training recipe"})
    student_init: str = field(default="base", metadata={
        "help": "base (the base model) or teacher (the teacher's full weights)"})
    base: str = field(default="", metadata={
        "help": "the base model (default: an adapter teacher's base, else the first round's teacher)"})
    eval_splits: tuple[str, ...] = field(default=("test",), metadata={
        "help": "splits whose ground truth is the held-out set (fixed by the first round)"})
    eval_max_samples: int = field(default=200, metadata={"help": "most held-out samples per task"})
    eval_dense_tokens: int = field(default=512, metadata={"help": "token budget of a held-out dense caption"})
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
        if not self.eval_splits:
            out.append("--eval-splits needs at least one split")
        if self.eval_max_samples < 1:
            out.append(f"--eval-max-samples {self.eval_max_samples} must be >= 1")
        return out


Label = Callable[[str, frozenset, bool], object]  # (teacher, pool video ids, include rejected) -> stage stats


def round_dir(ds: Dataset, n: int) -> Path:
    return ds.root / "rounds" / f"round-{n}"


def heldout_dir(ds: Dataset) -> Path:
    return ds.root / "rounds" / "heldout"


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
    pool = pool_videos(ds, cfg.pool)
    if not pool:
        raise ValueError(f"--pool {cfg.pool!r} chooses no video; `densevid sql --data {ds.root} "
                         "\"SELECT domain, count(*) FROM videos GROUP BY ALL\"` shows what there is")
    teacher = model_key(cfg.teacher)
    log(f"round {cfg.round}: teacher {teacher}, {len(pool)} pool videos")
    _step(steps, out, "label", lambda: label(cfg.teacher, frozenset(pool), not cfg.gate), log)
    heldout = ensure_heldout(ds, cfg.eval_splits)
    mixture = _step(steps, out, "mix", lambda: str(build_round_mixture(ds, cfg)), log)
    student = out / "student"
    _step(steps, out, "train", lambda: str(train_student(cfg, ds, mixture, student, log)), log)
    scores = _step(steps, out, "eval", lambda: evaluate_student(cfg, ds, student, heldout, out / "eval"), log)
    row = round_row(cfg, ds, pool, mixture, student, scores, steps)
    ds.write("rounds", [row])
    ds.refresh_catalog()
    return row


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
    tmp = out / ".steps.json.tmp"
    tmp.write_text(json.dumps(steps, indent=1, default=str))
    tmp.replace(out / "steps.json")


# --- pool and held-out set ------------------------------------------------------------------------------


def video_splits(ds: Dataset) -> dict[str, str]:
    """Each video's split as the tasks stage assigns it (stored once; near-duplicate families share one)."""
    from curation.splits import plan_splits

    return plan_splits(ds, [v["video_id"] for v in ds.rows("videos", ["video_id"])])[0]


def pool_videos(ds: Dataset, condition: str) -> list[str]:
    """Video ids matching ``condition`` (SQL over the videos table and ``split``), eval-only domains left out."""
    import duckdb
    import pyarrow as pa

    if ";" in condition:
        raise ValueError(f"--pool {condition!r} is one SQL condition (what follows WHERE); remove the ';'")
    videos = ds.read("videos")
    splits = video_splits(ds)
    videos = videos.append_column("split", pa.array([splits[v] for v in videos.column("video_id").to_pylist()]))
    con = duckdb.connect()
    try:
        con.register("videos", videos)
        rows = con.execute(f"SELECT video_id FROM videos WHERE NOT list_contains(?, domain) AND ({condition}) "
                           "ORDER BY video_id", [list(EVAL_ONLY_DOMAINS)]).fetchall()
    except duckdb.Error as e:
        raise ValueError(f"--pool {condition!r}: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
    return [r[0] for r in rows]


def ensure_heldout(ds: Dataset, splits: tuple[str, ...]) -> Path:
    """The fixed held-out set: written once from the eval splits' ground-truth samples (grounding, needles)
    and one dense-caption prompt per video (scored against the truth, whoever captioned it)."""
    import pyarrow as pa

    from curation.store import atomic_write_parquet

    out = heldout_dir(ds)
    if (out / "manifest.parquet").exists():
        return out
    rows = ds.sql(
        "SELECT * EXCLUDE (n) FROM (SELECT *, row_number() OVER (PARTITION BY video_id, task ORDER BY sample_id) AS n "
        "FROM samples WHERE list_contains(?, split) AND list_contains(?, task) "
        "AND (source = 'ground_truth' OR source IS NULL OR task = 'dense_caption')) "
        "WHERE task <> 'dense_caption' OR n = 1 ORDER BY task, sample_id",
        [list(splits), list(HELDOUT_TASKS)])
    if rows.num_rows == 0:
        raise ValueError(f"no held-out samples in split(s) {', '.join(splits)}: build them first (`densevid run` "
                         "over all videos writes them) or name other splits with --eval-splits")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(pa.Table.from_pylist(rows.to_pylist()), out / "manifest.parquet")
    (out / "about.json").write_text(json.dumps({"dataset": str(ds.root), "splits": list(splits),
                                                "samples": rows.num_rows}, indent=1))
    return out


# --- mixture, student, scores ---------------------------------------------------------------------------


def round_filter(teacher: str, gate: bool) -> str:
    """Samples a round trains on: ground truth, and the teacher's own samples (gated: only those whose
    grounding record passed; samples from captions have no record and pass)."""
    quoted = "'" + teacher.replace("'", "''") + "'"
    admitted = "coalesce(s.passed_gate, true)" if gate else "true"
    return f"(s.source = 'ground_truth' OR (s.model = {quoted} AND {admitted}))"


def build_round_mixture(ds: Dataset, cfg: RoundConfig) -> Path:
    from mixtures.balance import build_mixtures
    from mixtures.recipe import load_mix_recipe

    recipe = load_mix_recipe(cfg.mix_recipe, parse_overrides(list(cfg.mix)))
    own = round_filter(model_key(cfg.teacher), cfg.gate)
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
                                 max_samples=cfg.eval_max_samples, dense_max_new_tokens=cfg.eval_dense_tokens))
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
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(Path(mixture) / "manifest.parquet", columns=["source"])
    model = pc.sum(pc.equal(t.column("source"), "model")).as_py() or 0
    return dict(samples=t.num_rows, model=model, truth=t.num_rows - model)


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
        pool=cfg.pool, pool_videos=len(pool), records=gate["records"], gate="on" if cfg.gate else "off",
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
