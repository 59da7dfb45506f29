"""Train/val/test split of each video, assigned once and stored in the ``splits`` table.

A video's split never changes once assigned, and near-duplicate videos (a family: videos whose segments
share a duplicate group, or that one segment bridges through ``other_groups``) share one split. A new video
joins the split its family already holds, whatever the ids of the family's members; a new family gets the
split its smallest video id hashes to. A video whose samples were written before the table existed keeps
the split of those samples.

Stratified by domain: when, after that, a domain would have no video in train, one of its new families
goes to train instead (``how = 'stratified'``), taken from the held-out split that holds most of the domain's
new families, so a mixture of train sees every domain the data has. Only new families move; a stored split
never does. Eval-only domains (needle haystacks) are never split and take no part.
"""

from __future__ import annotations

from curation import CODE_VERSION
from curation.domains import EVAL_ONLY_DOMAINS
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
    taken = {family.get(v, v) for v in [*stored, *legacy]}
    fresh = {family.get(v, v): assign_split(family.get(v, v)) for v in new if family.get(v, v) not in taken}
    moved = _stratify(ds, stored, legacy, family, new, fresh)
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
            split, how = fresh[key], "stratified" if key in moved else "hash"
        hold(v, split)
        rows.append(dict(video_id=v, split=split, family=key, how=how, code_version=CODE_VERSION))
    out = {v: stored.get(v) for v in video_ids if v in stored}
    out.update({r["video_id"]: r["split"] for r in rows})
    return out, rows


def _stratify(ds: Dataset, stored: dict[str, str], legacy: dict[str, str], family: dict[str, str], new: list[str],
              fresh: dict[str, str]) -> set[str]:
    """Move new families into train (in ``fresh``) until every domain of these videos has a video there,
    where that domain has a new family held out; returns the keys moved."""
    videos = ds.read("videos", ["video_id", "domain"])
    domain = {v: d for v, d in zip(videos.column("video_id").to_pylist(), videos.column("domain").to_pylist())
              if d and d not in EVAL_ONLY_DOMAINS}
    fixed = {**stored, **legacy}
    joined: dict[str, str] = {}  # family -> the split a new member joins (its smallest assigned member's)
    for v in sorted(fixed):
        joined.setdefault(family.get(v, v), fixed[v])
    split_of = {**fixed, **{v: fresh.get(family.get(v, v)) or joined.get(family.get(v, v)) for v in new}}
    in_train = {domain[v] for v, s in split_of.items() if s == "train" and v in domain}
    domains_of: dict[str, set[str]] = {}
    for v in new:
        if v in domain and family.get(v, v) in fresh:
            domains_of.setdefault(family.get(v, v), set()).add(domain[v])
    moved: set[str] = set()
    for d in sorted({domain[v] for v in new if v in domain}):
        held_out = [k for k, doms in domains_of.items() if d in doms and fresh[k] != "train"]
        if d in in_train or not held_out:
            continue
        per_split = {s: sum(fresh[k] == s for k in held_out) for s in {fresh[k] for k in held_out}}
        key = min(held_out, key=lambda k: (-per_split[fresh[k]], k))
        log.info("splits: domain %s has no video in train; family %s goes there instead of %s", d, key, fresh[key])
        fresh[key] = "train"
        moved.add(key)
        in_train |= domains_of[key]
    return moved


def assign_splits(ds: Dataset, video_ids: list[str]) -> dict[str, str]:
    """Each video's split; those not assigned yet are assigned now and stored, so it never changes."""
    splits, rows = plan_splits(ds, video_ids)
    ds.write("splits", rows)
    return splits
