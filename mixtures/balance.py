"""Domain-balanced mixtures chosen by SQL over the catalog, written as a manifest folder."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.store import Dataset, atomic_write_parquet


_WORD = re.compile(r"[A-Za-z0-9_-]+")


@dataclass
class MixRecipe:
    name: str = "balanced"
    split: str = "train"
    balance: str = "domain"  # domain | none
    tasks: tuple[str, ...] = ()  # empty: every task
    max_per_domain: int = 0  # 0: the smallest domain's count

    def problems(self) -> list[str]:
        """Values go into the recorded SQL as literals, so they must be plain words."""
        out = []
        for field, value in [("name", self.name), ("split", self.split)] + [("tasks", t) for t in self.tasks]:
            if not _WORD.fullmatch(value) and not (field == "split" and value == ""):
                out.append(f"{field} {value!r} may only use letters, digits, '_' and '-'")
        if self.balance not in ("domain", "none"):
            out.append(f"balance {self.balance!r}: choose domain or none")
        if self.max_per_domain < 0:
            out.append(f"max_per_domain {self.max_per_domain} < 0; 0 means the smallest domain's count")
        return out

    def where(self) -> str:
        conds = [f"split = '{self.split}'"] if self.split else []
        if self.tasks:
            conds.append("task IN (" + ", ".join(f"'{t}'" for t in self.tasks) + ")")
        return " AND ".join(conds) or "TRUE"


def mixture_sql(recipe: MixRecipe) -> str:
    """The query that picks the mixture: the same number of samples per domain. sample_id is a sha256
    prefix, so ordering by it is a stable pseudo-random choice across DuckDB versions."""
    base = f"SELECT * FROM samples WHERE {recipe.where()}"
    if recipe.balance == "none":
        return base + " ORDER BY sample_id"
    cap = f"LEAST((SELECT min(n) FROM counts), {recipe.max_per_domain})" if recipe.max_per_domain else \
        "(SELECT min(n) FROM counts)"
    return f"""
WITH pool AS ({base}),
counts AS (SELECT domain, count(*) AS n FROM pool GROUP BY domain),
ranked AS (SELECT *, row_number() OVER (PARTITION BY domain ORDER BY sample_id) AS rn FROM pool)
SELECT * EXCLUDE (rn) FROM ranked WHERE rn <= {cap} ORDER BY domain, sample_id"""


def hours_by_domain_sql(where: str = "TRUE", table: str = "samples") -> str:
    return (f"SELECT domain, count(*) AS samples, round(sum(clip_end_s - clip_start_s) / 3600, 4) AS hours "
            f"FROM {table} WHERE {where} GROUP BY domain ORDER BY domain")


def build_mixture(ds: Dataset, recipe: MixRecipe) -> Path:
    """Write ``<dataset>/mixtures/<name>/`` with manifest.parquet, recipe.json and balance.json."""
    problems = recipe.problems()
    if problems:
        raise ValueError("bad mixture recipe:\n  " + "\n  ".join(problems))
    out = ds.root / "mixtures" / recipe.name
    out.mkdir(parents=True, exist_ok=True)
    query = mixture_sql(recipe)
    manifest = ds.sql(query)
    before = ds.sql(hours_by_domain_sql(recipe.where())).to_pylist()
    atomic_write_parquet(manifest, out / "manifest.parquet")
    con = _duck_over(manifest)
    after = con.sql(hours_by_domain_sql(table="manifest")).fetchall()
    report = {"before": before, "after": [dict(domain=d, samples=n, hours=h) for d, n, h in after],
              "rows": manifest.num_rows, "dataset": str(ds.root)}
    (out / "recipe.json").write_text(json.dumps({**asdict(recipe), "sql": query}, indent=1))
    (out / "balance.json").write_text(json.dumps(report, indent=1))
    return out


def _duck_over(table: pa.Table):
    import duckdb

    con = duckdb.connect()
    con.register("manifest", table)
    return con


def read_manifest(mixture_dir: str | Path) -> list[dict]:
    path = Path(mixture_dir) / "manifest.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; build a mixture first with `densevid mix --data DIR`")
    return pq.read_table(path).to_pylist()


def balance_report(mixture_dir: str | Path) -> dict:
    return json.loads((Path(mixture_dir) / "balance.json").read_text())
