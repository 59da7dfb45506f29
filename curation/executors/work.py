"""What executors hand to workers (``Work``: a batch of items, or one unit of a long item) and how the
driver turns what comes back into rows: units are joined per item, everything goes through the writer."""

from __future__ import annotations

from dataclasses import dataclass, field

from curation.stage import Stage, Stats, fail_item, item_size, process_batch
from curation.store import Dataset


@dataclass
class Work:
    """A batch of whole items, or (``unit`` set) part ``index`` of the single item in ``items``."""

    items: list[dict]
    unit: dict | None = None
    index: int = 0
    size: float = 0.0


def plan_work(stage: Stage, pending: list[dict], units: bool = True) -> list[Work]:
    """Long items cut into their units (when ``units``), the rest in the stage's batches; longest first,
    so a long video starts early and never runs alone at the end."""
    works, whole = [], []
    for item in pending:
        parts = stage.units(item) if units else None
        if parts and len(parts) > 1:
            works += [Work([item], u, k, float(u.get("size", 0))) for k, u in enumerate(parts)]
        else:
            whole.append(item)
    works += [Work(b, size=sum(item_size(it) for it in b)) for b in stage.make_batches(whole)]
    works.sort(key=lambda w: -w.size)
    return works


def run_work(stage: Stage, ds: Dataset, work: Work):
    """On a worker: a batch's rows (bad items become failures rows) or a unit's result; and the counts."""
    stats = Stats(stage.name)
    if work.unit is None:
        return process_batch(stage, work.items, ds, stats), stats
    return stage.run_unit(work.unit), stats


@dataclass
class Collector:
    """On the driver: results in, rows out through the writer; units wait for their siblings."""

    stage: Stage
    ds: Dataset
    stats: Stats
    writer: object
    bar: object
    works: list[Work]
    parts: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    dead: set = field(default_factory=set)

    def __post_init__(self):
        for w in self.works:
            if w.unit is not None:
                vid = w.items[0]["item_id"]
                self.expected[vid] = self.expected.get(vid, 0) + 1

    def done(self, work: Work, result, stats: Stats) -> None:
        self.stats.merge(stats)
        if work.unit is None:
            self.writer.add(work.items, result)
            self.bar.update(len(work.items))
            return
        item = work.items[0]
        vid = item["item_id"]
        if vid in self.dead:
            return
        got = self.parts.setdefault(vid, {})
        got[work.index] = result
        if len(got) < self.expected[vid]:
            return
        parts = [got[k] for k in sorted(self.parts.pop(vid))]
        try:
            rows = self.stage.combine(item, parts, self.stats)
        except Exception as e:
            fail_item(self.stage, self.ds, self.stats, vid, e)
            self.bar.update(1)
            return
        self.writer.add([item], rows)
        self.bar.update(1)

    def failed(self, work: Work, error: BaseException) -> None:
        """A worker died or a unit raised: the items fail, not the job."""
        if work.unit is None:
            for item in work.items:
                fail_item(self.stage, self.ds, self.stats, item["item_id"], error)
            self.bar.update(len(work.items))
            return
        vid = work.items[0]["item_id"]
        if vid not in self.dead:
            self.dead.add(vid)
            self.parts.pop(vid, None)
            fail_item(self.stage, self.ds, self.stats, vid, error)
            self.bar.update(1)


class WorkerDied(RuntimeError):
    """The process running an item ended without an answer (killed, crashed in native code, or exited)."""


def died_message(stage: Stage, work: Work) -> str:
    what = f"item {work.items[0]['item_id']}" + (f" (unit {work.index})" if work.unit is not None else "")
    if work.unit is None and len(work.items) > 1:
        what = "items " + ", ".join(it["item_id"] for it in work.items)
    return (f"{stage.name}: the worker process died while running {what} (a crash in native code, the "
            f"out-of-memory killer, or an exit); the other items went on")
