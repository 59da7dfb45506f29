"""Train/val/test split of each video, assigned once and stored in the ``splits`` table.

A video's split never changes once assigned, and near-duplicate videos (a family: videos whose segments
share a duplicate group, or that one segment bridges through ``other_groups``) share one split. A new video
joins the split its family already holds, whatever the ids of the family's members; a new family gets the
split its smallest video id hashes to. A video whose samples were written before the table existed keeps
the split of those samples.
"""

from __future__ import annotations

from curation import CODE_VERSION
from curation.stage import log
from curation.store import Dataset, stable_id


def assign_split(key: str, val_pct: int = 10, test_pct: int = 10) -> str:
    """The split a new family's key hashes to, so reruns and other machines agree."""
    bucket = int(stable_id("split", key, n=8), 16) % 100
    return "test" if bucket < test_pct else "val" if bucket < test_pct + val_pct else "train"


def families(ds: Dataset) -> dict[str, str]:
    """video_id -> its family's key, the smallest video id among the videos its segments share
    near-duplicate groups with (or bridge groups with: ``other_groups``). Videos without duplicates rows
    are absent (their own family)."""
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    def union(a: str, b: str) -> None:
        a, b = find(a), find(b)
        if a != b:
            parent[max(a, b)] = min(a, b)

    t = ds.read("duplicates", ["video_id", "dup_group", "other_groups"])
    videos, groups, others = (t.column(c).to_pylist() for c in ("video_id", "dup_group", "other_groups"))
    first: dict[str, str] = {}
    for v, g in zip(videos, groups):
        union(first.setdefault(g, v), v)
    for v, bridged in zip(videos, others):  # a segment that matched several groups joins their videos too
        for g in bridged or ():
            union(first[g], v)
    return {v: find(v) for v in parent}


def stored_splits(ds: Dataset) -> dict[str, str]:
    """video_id -> the split stored for it (the first row, should two writers have raced)."""
    t = ds.read("splits", ["video_id", "split"])
    out: dict[str, str] = {}
    for v, s in zip(t.column("video_id").to_pylist(), t.column("split").to_pylist()):
        out.setdefault(v, s)
    return out


def _sample_splits(ds: Dataset, video_ids: list[str]) -> dict[str, str]:
    """The split of the samples already written for these videos (datasets from before ``splits``)."""
    t = ds.read("samples", ["video_id", "split"])
    wanted, out = set(video_ids), {}
    for v, s in zip(t.column("video_id").to_pylist(), t.column("split").to_pylist()):
        if v in wanted and s:
            out.setdefault(v, s)
    return out


def plan_splits(ds: Dataset, video_ids: list[str]) -> tuple[dict[str, str], list[dict]]:
    """Each video's split, and the ``splits`` rows that would record those not assigned yet."""
    stored = stored_splits(ds)
    family = families(ds)
    new = sorted({v for v in video_ids if v not in stored})
    legacy = _sample_splits(ds, new)
    held: dict[str, dict[str, str]] = {}  # family -> {member: split} of members already assigned

    def hold(v: str, split: str) -> None:
        held.setdefault(family.get(v, v), {})[v] = split

    for v, s in stored.items():
        hold(v, s)
    rows = []
    for v in sorted(new, key=lambda v: (v not in legacy, family.get(v, v), v)):
        key = family.get(v, v)
        members = held.get(key, {})
        if v in legacy:
            split, how = legacy[v], "samples"
        elif members:
            split, how = members[min(members)], "family"
            if len(set(members.values())) > 1:
                log.warning("splits: family %s already spans %s (assigned before they were known to be "
                            "copies); video %s joins %s", key, ", ".join(sorted(set(members.values()))), v, split)
        else:
            split, how = assign_split(key), "hash"
        hold(v, split)
        rows.append(dict(video_id=v, split=split, family=key, how=how, code_version=CODE_VERSION))
    out = {v: stored.get(v) for v in video_ids if v in stored}
    out.update({r["video_id"]: r["split"] for r in rows})
    return out, rows


def assign_splits(ds: Dataset, video_ids: list[str]) -> dict[str, str]:
    """Each video's split; those not assigned yet are assigned now and stored, so it never changes."""
    splits, rows = plan_splits(ds, video_ids)
    ds.write("splits", rows)
    return splits
