"""Mixtures chosen by SQL over the catalog: a recipe's shares become per-group quotas, one query selects the
rows, and the folder `<dataset>/mixtures/<name>/` holds the manifest, the recipe with that query, and the
balance report (JSON and a bar chart)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation import storage
from curation.atomic import atomic_write_bytes
from curation.domains import EVAL_ONLY_DOMAINS
from curation.store import Dataset, atomic_write_parquet, read_parquet, to_arrow
from mixtures.recipe import DIMENSIONS, UNIT_SQL, MixRecipe
from mixtures.shares import Cell, marginal, normalized, plan_total, quotas, rake, temperature_shares

# Columns the pool adds for filters and bookkeeping; the manifest keeps `source` and `repeat` only.
_VIDEO_COLUMNS = "coalesce(v.source, '') AS source, v.duration_s AS video_duration_s, " \
                 "v.width AS video_width, v.height AS video_height"
_HELPER_COLUMNS = ("cum", "pick", "unit_weight", "passes_filter", "eligible", "video_duration_s", "video_width",
                   "video_height", "keep", "dropped_share")


def sql_literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(float(value))


def pool_sql(recipe: MixRecipe) -> str:
    """CTEs ending in ``pool``: every sample of the split with its video's columns, ``dropped_share`` (the share
    of its clip's segment frames the ``quality`` view drops) and ``keep`` (that share is below the recipe's
    ``max_dropped_share``: a segment-level sample follows its segment, a whole-video one survives a bad tail),
    its weight in the unit, a seeded md5 as a 128-bit number to order by (stable across DuckDB versions,
    unlike ``hash()``), and whether it passes the filter and the per-video cap (``eligible``)."""
    where = [f"s.split = {sql_literal(recipe.split)}"] if recipe.split else []
    if recipe.tasks:
        where.append("s.task IN (" + ", ".join(sql_literal(t) for t in recipe.tasks) + ")")
    cap = (f"passes_filter AND row_number() OVER (PARTITION BY video_id, passes_filter ORDER BY pick) "
           f"<= {recipe.max_per_video}") if recipe.max_per_video else "passes_filter"
    overlap = "least(g.end_frame, s.clip_end_frame) - greatest(g.start_frame, s.clip_start_frame)"
    return f"""WITH clip_keep AS (
  SELECT s.sample_id, coalesce(sum({overlap}) FILTER (WHERE NOT q.keep), 0) / sum({overlap}) AS dropped_share
  FROM samples s JOIN segments g ON g.video_id = s.video_id
    AND g.start_frame < s.clip_end_frame AND g.end_frame > s.clip_start_frame
  JOIN quality q ON q.segment_id = g.segment_id
  GROUP BY s.sample_id),
joined AS (
  SELECT s.*, {_VIDEO_COLUMNS}, coalesce(k.dropped_share, 0.0) AS dropped_share,
    coalesce(k.dropped_share, 0.0) < {sql_literal(recipe.max_dropped_share)} AS keep
  FROM samples s LEFT JOIN videos v ON v.video_id = s.video_id LEFT JOIN clip_keep k ON k.sample_id = s.sample_id
  WHERE {" AND ".join(where) or "TRUE"}),
weighed AS (
  SELECT *, {UNIT_SQL[recipe.unit]} AS unit_weight, md5_number({sql_literal(f"{recipe.seed}:")} || sample_id) AS pick,
    coalesce(({recipe.filter or "TRUE"}), FALSE) AS passes_filter
  FROM joined),
pool AS (SELECT *, {cap} AS eligible FROM weighed)"""


def stats_sql(recipe: MixRecipe) -> str:
    """The balance query: per (domain, task, source), samples and mass in the unit, in the split, after the
    filter, and after the per-video cap."""
    return pool_sql(recipe) + """
SELECT domain, task, source,
  count(*) AS n_split, sum(unit_weight) AS mass_split,
  count(*) FILTER (WHERE passes_filter) AS n_filtered, coalesce(sum(unit_weight) FILTER (WHERE passes_filter), 0)
    AS mass_filtered,
  count(*) FILTER (WHERE eligible) AS n_eligible, coalesce(sum(unit_weight) FILTER (WHERE eligible), 0)
    AS mass_eligible
FROM pool GROUP BY ALL ORDER BY ALL"""


def groups_sql(recipe: MixRecipe) -> str:
    """Per (domain, task) of the recipe's tasks, in any split, the splits that hold samples of it; eval-only
    domains (needle haystacks, never in train) aside."""
    where = ["NOT list_contains([" + ", ".join(map(sql_literal, sorted(EVAL_ONLY_DOMAINS))) + "], domain)"]
    if recipe.tasks:
        where.append("task IN (" + ", ".join(sql_literal(t) for t in recipe.tasks) + ")")
    return (f"SELECT domain, task, list(DISTINCT split ORDER BY split) AS splits FROM samples "
            f"WHERE {' AND '.join(where)} GROUP BY ALL")


def selection_sql(recipe: MixRecipe, dims: tuple[str, ...], cell_quotas: dict[Cell, tuple[float, int]]) -> str:
    """The query that picks the mixture: within each cell, eligible samples in hash order (every sample once
    before any second copy; a cell gets only the copies it needs), taken while the running total's midpoint
    stays under the cell's quota."""
    values = ", ".join("(" + ", ".join([*map(sql_literal, cell), sql_literal(q), str(n)]) + ")"
                       for cell, (q, n) in sorted(cell_quotas.items()))
    cols = ", ".join(dims)
    partition = f"PARTITION BY {cols} " if dims else ""
    join = f"JOIN quotas q USING ({cols})" if dims else "CROSS JOIN quotas q"
    return pool_sql(recipe) + f""",
quotas({cols + ", " if dims else ""}quota, copies) AS (VALUES {values}),
copies AS (SELECT p.*, q.quota, unnest(range(q.copies)) AS repeat FROM pool p {join} WHERE p.eligible),
ranked AS (SELECT *, sum(unit_weight) OVER ({partition}ORDER BY repeat, pick ROWS UNBOUNDED PRECEDING) AS cum
  FROM copies)
SELECT * EXCLUDE ({", ".join(_HELPER_COLUMNS)}, quota)
FROM ranked
WHERE cum - unit_weight / 2 < quota
ORDER BY {cols + ", " if dims else ""}repeat, pick"""


@dataclass
class Plan:
    """What a recipe asks of one split: cell shares and quotas, the total, and the query that selects."""

    recipe: MixRecipe
    stats: list[dict]
    dims: tuple[str, ...]
    shares: dict[Cell, float] = field(default_factory=dict)
    total: float = 0.0
    sql: str = ""
    missing: list[str] = field(default_factory=list)  # targeted groups absent from this split
    # dimension -> group -> splits: groups the dataset has elsewhere that this split has no sample of
    absent: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def plan_mixture(con, recipe: MixRecipe, strict: bool = True) -> Plan:
    """Shares and quotas from the split's group sizes. ``strict``: a targeted group with no samples is an
    error (for held-out splits it is dropped and reported instead)."""
    stats = _run(con, stats_sql(recipe), "the balance query").to_pylist()
    plan = Plan(recipe, stats, recipe.dimensions())
    plan.absent = _absent_groups(con, recipe, stats)
    mass = _cell_mass(stats, plan.dims)
    if not mass:
        return plan
    targets = _marginal_targets(recipe, plan, mass, strict)
    index = {d: i for i, d in enumerate(plan.dims)}
    plan.shares = rake(mass, {index[d]: t for d, t in targets.items()}, plan.dims)
    plan.total = plan_total(plan.shares, mass, recipe.repeats(), recipe.budget)
    cell_quotas = quotas(plan.shares, plan.total)
    copies = {c: min(recipe.repeats(), max(1, math.ceil(q / mass[c] - 1e-9))) for c, q in cell_quotas.items()}
    plan.sql = selection_sql(recipe, plan.dims, {c: (q, copies[c]) for c, q in cell_quotas.items()})
    return plan


def _absent_groups(con, recipe: MixRecipe, stats: list[dict]) -> dict[str, dict[str, list[str]]]:
    """Domains and tasks the dataset has samples of (in other splits) that the recipe's split has none of."""
    if not recipe.split:
        return {}
    everywhere = _run(con, groups_sql(recipe), "the groups query").to_pylist()
    out = {}
    for dim in ("domain", "task"):
        here = {r[dim] for r in stats}
        found: dict[str, set[str]] = {}
        for r in everywhere:
            if r[dim] not in here:
                found.setdefault(r[dim], set()).update(r["splits"])
        out[dim] = {g: sorted(splits) for g, splits in sorted(found.items())}
    return out


def _cell_mass(stats: list[dict], dims: tuple[str, ...]) -> dict[Cell, float]:
    mass: dict[Cell, float] = {}
    for row in stats:
        if row["mass_eligible"] > 0:
            cell = tuple(row[d] for d in dims)
            mass[cell] = mass.get(cell, 0.0) + row["mass_eligible"]
    return mass


def _marginal_targets(recipe: MixRecipe, plan: Plan, mass: dict[Cell, float], strict: bool) -> dict:
    out = {}
    for i, dim in enumerate(plan.dims):
        sizes = marginal(mass, i)
        explicit = getattr(recipe.targets, dim)
        if not explicit:
            out[dim] = temperature_shares(sizes, recipe.temperature)
            continue
        absent = [g for g, share in explicit.items() if share > 0 and g not in sizes]
        if absent and not strict and len(absent) == sum(share > 0 for share in explicit.values()):
            raise ValueError(f"the targets cannot all hold at once in split {recipe.split!r}: none of the "
                             f"targets.{dim} groups ({', '.join(absent)}) has samples there after the filter and "
                             f"the per-video cap; present: {', '.join(sorted(sizes))}. Give that split samples "
                             f"of them, or leave it out (holdout=)")
        if absent and strict:
            raise ValueError(f"targets.{dim}: {', '.join(absent)} ha{'s' if len(absent) == 1 else 've'} no "
                             f"samples in split {recipe.split!r} after the filter and the per-video cap; "
                             f"present: {', '.join(sorted(sizes))}. Drop {'it' if len(absent) == 1 else 'them'} "
                             f"or loosen the filter")
        plan.missing += [f"{dim}={g}" for g in absent]
        out[dim] = normalized({g: s for g, s in explicit.items() if g in sizes})
    return out


def _run(con, query: str, what: str) -> pa.Table:
    import duckdb

    try:
        return to_arrow(con.sql(query))
    except duckdb.Error as e:
        raise ValueError(f"{what} failed: {str(e).splitlines()[0]}; check the recipe's filter and tasks") from e


# --- the report -------------------------------------------------------------------------------------------


def balance(plan: Plan, manifest: pa.Table | None) -> dict:
    """Per dimension and group: target, natural (before) and achieved share in the unit, and the error; what
    the filter and the cap removed per domain; totals."""
    after = _after_mass(manifest, plan.recipe.unit) if manifest is not None else []
    dims = {dim: _dimension_rows(plan, dim, after) for dim in DIMENSIONS}
    return {
        "mixture": plan.recipe.name, "split": plan.recipe.split, "unit": plan.recipe.unit,
        "balanced_by": list(plan.dims), "budget": plan.recipe.budget, "planned_total": plan.total,
        "total": sum(r["mass"] for r in after), "rows": manifest.num_rows if manifest is not None else 0,
        "repeated_rows": sum(r["repeated"] for r in after), "missing_targets": plan.missing,
        "missing_domains": list(plan.absent.get("domain", {})), "missing_tasks": list(plan.absent.get("task", {})),
        "warnings": warnings(plan), "dimensions": dims, "filtered": _filtered(plan.stats),
    }


def warnings(plan: Plan) -> list[str]:
    """One line per dimension whose groups the dataset has but this split lacks: shares over the split say
    nothing about them."""
    out = []
    split = plan.recipe.split
    present = {dim: sorted({r[dim] for r in plan.stats}) for dim in ("domain", "task")}
    for dim, absent in plan.absent.items():
        if absent:
            where = sorted({s for splits in absent.values() for s in splits})
            out.append(f"split {split!r} has no samples of {dim}s {', '.join(absent)} (the dataset has them in "
                       f"{', '.join(where)}); this mixture covers {dim}s {', '.join(present[dim]) or 'none'} only")
    return out


def _after_mass(manifest: pa.Table, unit: str) -> list[dict]:
    import duckdb

    con = duckdb.connect()
    con.register("manifest", manifest)
    return _run(con, f"SELECT domain, task, source, count(*) AS n, sum({UNIT_SQL[unit]}) AS mass, "
                     f"count(*) FILTER (WHERE repeat > 0) AS repeated FROM manifest GROUP BY ALL", "report").to_pylist()


def _dimension_rows(plan: Plan, dim: str, after: list[dict]) -> list[dict]:
    before = _sum_by(plan.stats, dim, "mass_eligible")
    got = _sum_by(after, dim, "mass")
    count = _sum_by(after, dim, "n")
    target = marginal(plan.shares, plan.dims.index(dim)) if dim in plan.dims else {}
    b_total, a_total = sum(before.values()) or 1.0, sum(got.values()) or 1.0
    rows = []
    for group in sorted(set(before) | set(got) | set(target)):
        achieved = got.get(group, 0.0) / a_total
        row = {"group": group, "before": before.get(group, 0.0) / b_total, "achieved": achieved,
               "available": before.get(group, 0.0), "selected": got.get(group, 0.0), "samples": int(count.get(group, 0))}
        if dim in plan.dims:
            row["target"] = target.get(group, 0.0)
            row["error"] = achieved - row["target"]
        rows.append(row)
    return rows


def _sum_by(rows: list[dict], dim: str, key: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        out[r[dim]] = out.get(r[dim], 0.0) + (r[key] or 0.0)
    return out


def _filtered(stats: list[dict]) -> list[dict]:
    """Per domain: samples in the split, after the filter, after the per-video cap."""
    out: dict[str, dict] = {}
    for r in stats:
        d = out.setdefault(r["domain"], {"domain": r["domain"], "split": 0, "filter": 0, "cap": 0})
        d["split"] += r["n_split"]
        d["filter"] += r["n_filtered"]
        d["cap"] += r["n_eligible"]
    return sorted(out.values(), key=lambda d: d["domain"])


def max_error(report: dict) -> float:
    """The largest |achieved - target| share over every balanced dimension."""
    return max((abs(r["error"]) for rows in report["dimensions"].values() for r in rows if "error" in r), default=0.0)


def write_chart(report: dict, path: Path) -> None:
    """One panel per balanced dimension: before, target and achieved share of each group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = report["balanced_by"] or ["domain"]
    fig, axes = plt.subplots(len(dims), 1, figsize=(8, 2.6 * len(dims)), squeeze=False)
    for ax, dim in zip(axes[:, 0], dims):
        rows = report["dimensions"][dim]
        xs = range(len(rows))
        for k, (key, label) in enumerate((("before", "before"), ("target", "target"), ("achieved", "achieved"))):
            ax.bar([x + (k - 1) * 0.27 for x in xs], [r.get(key, 0.0) for r in rows], width=0.27, label=label)
        ax.set_xticks(list(xs), [r["group"] for r in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"share of {report['unit']}")
        ax.set_title(f"{report['mixture']}: {dim}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()  # a bucket takes bytes, not a file name
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())


# --- building ---------------------------------------------------------------------------------------------


@dataclass
class Built:
    """One mixture (the recipe's split or a held-out one): where it went and its report."""

    name: str
    path: Path | None
    report: dict
    sql: str


def build_mixtures(ds: Dataset, recipe: MixRecipe, dry_run: bool = False) -> list[Built]:
    """The recipe's mixture, then one per held-out split; ``dry_run`` selects and reports without writing.
    Every split is planned and selected before any is written, so a recipe that cannot hold writes nothing."""
    problems = recipe.problems()
    if problems:
        raise ValueError("bad mixture recipe:\n  " + "\n  ".join(problems))
    con = ds.connect(read_only=True)
    try:
        chosen = [_select(ds, con, recipe, strict=True)]
        chosen += [_select(ds, con, recipe.for_split(h), strict=False) for h in recipe.holdout]
    finally:
        con.close()
    return [built if dry_run or manifest is None else _write(ds, built, manifest, r)
            for r, (built, manifest) in zip([recipe, *map(recipe.for_split, recipe.holdout)], chosen)]


def build_mixture(ds: Dataset, recipe: MixRecipe) -> Path:
    """Write the recipe's mixtures; the main one's folder."""
    return build_mixtures(ds, recipe)[0].path


def _select(ds: Dataset, con, recipe: MixRecipe, strict: bool) -> tuple[Built, pa.Table | None]:
    """One split's plan, selection and report (nothing written)."""
    plan = plan_mixture(con, recipe, strict)
    if not plan.sql:
        if strict:
            raise ValueError(f"no samples in split {recipe.split!r} pass the recipe's tasks and filter; build "
                             f"samples first (`densevid tasks`) or loosen the filter")
        return Built(recipe.name, None, balance(plan, None), ""), None
    manifest = _run(con, plan.sql, "the selection query")
    report = balance(plan, manifest)
    report["dataset"] = str(ds.root)
    return Built(recipe.name, None, report, plan.sql), manifest


def _write(ds: Dataset, built: Built, manifest: pa.Table, recipe: MixRecipe) -> Built:
    out = ds.root / "mixtures" / recipe.name
    if not ds.remote:
        out.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(manifest, out / "manifest.parquet")
    recipe_json = {**asdict(recipe), "sql": built.sql, "balance_sql": stats_sql(recipe)}
    (out / "recipe.json").write_text(json.dumps(_finite(recipe_json), indent=1))
    (out / "balance.json").write_text(json.dumps(_finite(built.report), indent=1))
    write_chart(built.report, out / "balance.png")
    return Built(built.name, out, built.report, built.sql)


def _finite(value):
    """Strict JSON: an infinite temperature is written as the string "inf" (which recipes read back)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def read_manifest(mixture_dir: str | Path, columns: list[str] | None = None) -> list[dict]:
    """A mixture's manifest rows (the one reader: training, evaluation, export, the report)."""
    path = storage.location(mixture_dir) / "manifest.parquet"  # a bucket's too
    if not storage.exists(path):
        raise FileNotFoundError(f"{path} not found; pass a mixture folder (`densevid mix --data DIR` writes "
                                "DIR/mixtures/<name>/)")
    return read_parquet(path, columns=columns).to_pylist()


def balance_report(mixture_dir: str | Path) -> dict:
    return json.loads((storage.location(mixture_dir) / "balance.json").read_text())
