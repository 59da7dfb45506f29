"""Pipeline config and the ordered list of stages; the CLI flags of the stage subcommands come from the
config's fields."""

from __future__ import annotations

import importlib.util
from dataclasses import MISSING, dataclass, field, replace

from curation import storage
from curation.domains import parse_rule
from curation.frames import FramePolicy
from curation.executors import EXECUTORS, RunOptions, run_stage
from curation.stage import Stats, parse_shard
from curation.quality import DedupStage, QualityConfig, QualityStage
from curation.scenes import DetectorConfig, SegmentPolicy
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset
from curation.times import STYLES
from model.loader import DEFAULT_MODEL
from model.structured import Decoding
from synth.captions import CaptionStage
from synth.dense import DenseStage
from synth.grounding import GroundStage, GroundTruthStage
from synth.needle import NEEDLE_DEPTHS, NEEDLE_DURATIONS_S, NeedleStage, grid_problems
from synth.tasks import BUILDERS, TasksStage
from synth.verify import GateConfig, VerifyStage

STAGES = ("ingest", "split", "quality", "dedup", "caption", "dense", "ground", "verify", "tasks")
BACKENDS = ("transformers", "vllm")
_MODEL_STAGES = ("caption", "dense", "ground", "verify", "tasks")
_GENERATE_STAGES = ("caption", "ground", "verify")


def option(default=MISSING, *, help: str, stages: tuple[str, ...] = STAGES, factory=MISSING, **cli):
    """A config field that is also a flag of the subcommands running any of ``stages`` (``run`` runs them all).

    ``cli`` may hold ``choices`` (listed in the help; ``problems`` checks them, so every mistake is reported
    at once), ``flag`` (a spelling other than ``--field-name``), ``repeat`` (the flag is given once per value),
    ``metavar`` and ``required`` (a flag every subcommand showing it needs, though the field has a default). A nested config (``factory``) turns each of its own fields into a flag.
    """
    return field(default=default, default_factory=factory, metadata=dict(help=help, stages=stages, **cli))


@dataclass
class PipelineConfig:
    """What the stages read: where the data goes, which model, and each stage's knobs.

    Every field is a flag of the stage subcommands that use it (its metadata: ``help`` and ``stages``);
    ``detector`` and ``policy`` are the split stage's scene detection and cut-to-segment policy.
    """

    data: str = option(help="dataset directory (Parquet tables + catalog), or a URL: s3://bucket/ds, gs://...",
                       metavar="DIR")
    workers: int = option(1, help="processes for CPU stages (ingest, split)")
    shard: str | None = option(None, help="i/n: process only shard i of n (for cluster schedulers)")
    executor: str = option("local", choices=EXECUTORS,
                           help="local (this machine) or ray (a Ray cluster; pip install 'densevid[ray]')")
    ray_address: str = option("", help="with --executor ray: the cluster to join, e.g. auto or ray://head:10001 "
                                       "(default: start a local one)")
    ray_min_actors: int = option(1, stages=_GENERATE_STAGES, help="with --executor ray: fewest model workers")
    ray_max_actors: int = option(0, stages=_GENERATE_STAGES,
                                 help="with --executor ray: most model workers (0: as many as the GPUs hold)")
    write_rows: int = option(0, help="group finished batches into files of about this many rows "
                                     "(0: a file per batch; default 1000 with --executor ray)")
    write_every_s: float = option(0.0, help="also write a group once it is this old (default 30 with --executor ray)")
    compact_above: int = option(64, help="compact a table the stage wrote to one file once it has more files "
                                         "than this (0: never)")
    videos: str | None = option(None, stages=("ingest",), metavar="DIR", required=True,
                                help="folder of videos, or a URL (s3://bucket/prefix); subfolders name domains")
    manifest: str | None = option(None, stages=("ingest",), metavar="FILE",
                                  help="CSV/JSONL/Parquet with uri and any of domain, source, license (a path or "
                                       "a URL: s3://bucket/manifest.csv)")
    domain_rules: tuple[str, ...] = option((), stages=("ingest",), flag="--domain-rule", repeat=True,
                                           metavar="GLOB=DOMAIN",
                                           help="label matching paths, e.g. '*/ego/*=egocentric' (repeatable)")
    model: str = option(DEFAULT_MODEL, stages=_MODEL_STAGES, help="hub id or local dir")
    caption_frames: int = option(16, stages=("caption", "ground", "verify", "tasks"),
                                 help="max frames per segment (even)")
    sample_frames: int = option(64, stages=("tasks",), help="max frames per training sample (even)")
    batch_size: int = option(4, stages=_GENERATE_STAGES, help="segments (verify: records) per generate call")
    max_new_tokens: int = option(0, stages=_GENERATE_STAGES,
                                 help="most tokens generated per item (0: the longest output the schema allows)")
    backend: str = option("transformers", stages=_GENERATE_STAGES, choices=BACKENDS,
                          help="inference backend for caption/ground/verify (vllm: GPU, "
                               "pip install 'densevid[vllm]')")
    retries: int = option(2, stages=_GENERATE_STAGES,
                          help="sampled retries of an output that breaks a rule (time outside the segment, bad box)")
    vllm_max_model_len: int = option(32768, stages=_GENERATE_STAGES, help="with --backend vllm: context length")
    vllm_gpu_memory: float = option(0.85, stages=_GENERATE_STAGES,
                                    help="with --backend vllm: share of GPU memory the one engine per worker takes")
    renderer: str = option("seconds", stages=("dense",), choices=STYLES,
                           help="dense caption times: <12.0 - 17.5 seconds> or <00:00:12 - 00:00:17>")
    storyline: bool = option(False, stages=("dense",),
                             help="let the model rewrite each video's entries as one story (spans checked)")
    tasks: tuple[str, ...] = option((), stages=("tasks",), help=f"task kinds to build, of {', '.join(BUILDERS)} "
                                    "(default: all); a video with samples of one of them counts as done")
    include_rejected: bool = option(False, stages=("tasks",),
                                    help="also make samples of the model's grounding records the gate rejected "
                                         "(each says so in passed_gate): the no-gate control")
    needle: bool = option(False, stages=("tasks",),
                          help="also write needle-in-a-haystack videos and their test samples (evaluation only)")
    needle_durations_s: tuple[float, ...] = option(NEEDLE_DURATIONS_S, stages=("tasks",), flag="--needle-durations",
                                                   help="with --needle: haystack lengths in seconds")
    needle_depths: tuple[float, ...] = option(NEEDLE_DEPTHS, stages=("tasks",),
                                              help="with --needle: needle positions as fractions of the haystack")
    detector: DetectorConfig = option(factory=DetectorConfig, stages=("split",), help="scene detection")
    policy: SegmentPolicy = option(factory=SegmentPolicy, stages=("split",), help="cuts to segments")
    gate: GateConfig = option(factory=GateConfig, stages=("verify",), help="thresholds of the model-record gate")
    quality: QualityConfig = option(factory=QualityConfig, stages=("quality",), help="quality thresholds")
    skip: tuple[str, ...] = option((), help="stages to leave out, e.g. quality,dedup")

    def problems(self, stages: tuple[str, ...]) -> list[str]:
        out = self.detector.problems() + self.policy.problems() + self.gate.problems() + self.quality.problems()
        out += [f"--skip {s!r} is not a stage; stages are {', '.join(STAGES)}" for s in self.skip if s not in STAGES]
        ingest = "ingest" in stages and "ingest" not in self.skip
        unreachable = _unreachable(data=self.data, videos=self.videos if ingest else None,
                                   manifest=self.manifest if ingest else None)
        out += unreachable
        if "ingest" in stages and not self.videos:
            out.append("ingest needs --videos DIR (a folder of video files; subfolders name domains)")
        elif ingest and not unreachable and not storage.exists(self.videos):
            out.append(f"--videos {self.videos}: no such folder; pass --videos DIR with video files in it")
        if not ingest and not unreachable and not Dataset.exists(self.data):  # a typo must not become a dataset
            out.append(f"--data {self.data} is no dataset yet (no videos table); run densevid ingest --videos DIR "
                       f"--data {self.data} (or densevid run) first")
        try:
            [parse_rule(r) for r in self.domain_rules]
        except ValueError as e:
            out.append(str(e))
        if ingest and self.manifest and not unreachable and not storage.exists(self.manifest):
            out.append(f"--manifest {self.manifest} not found")
        if self.backend not in BACKENDS:
            out.append(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.renderer not in STYLES:
            out.append(f"--renderer {self.renderer!r}: choose one of {', '.join(STYLES)}")
        if self.retries < 0:
            out.append(f"--retries {self.retries} must be >= 0")
        if self.workers < 1:
            out.append(f"--workers {self.workers} must be >= 1")
        if not 0 < self.vllm_gpu_memory <= 1:
            out.append(f"--vllm-gpu-memory {self.vllm_gpu_memory} must be a share in (0, 1]")
        if self.vllm_max_model_len < 1024:
            out.append(f"--vllm-max-model-len {self.vllm_max_model_len} must be >= 1024")
        try:
            parse_shard(self.shard)
        except ValueError as e:
            out.append(str(e))
        for name, value in (("--caption-frames", self.caption_frames), ("--sample-frames", self.sample_frames)):
            if value < 2 or value % 2:
                out.append(f"{name} {value} must be even and >= 2")
        unknown = [t for t in self.tasks if t not in BUILDERS]
        if unknown:
            out.append(f"--tasks {','.join(unknown)}: unknown task kinds; choose from {', '.join(BUILDERS)}")
        if self.executor == "ray" and importlib.util.find_spec("ray") is None:
            out.append("--executor ray needs Ray: pip install 'densevid[ray]'")
        return out + self.run_options().problems() + grid_problems(self.needle_durations_s, self.needle_depths)

    def run_options(self) -> RunOptions:
        ray = self.executor == "ray"
        return RunOptions(executor=self.executor, workers=self.workers, shard=_shard(self.shard),
                          ray_address=self.ray_address, min_actors=self.ray_min_actors, max_actors=self.ray_max_actors,
                          write_rows=self.write_rows or (1000 if ray else 0),
                          write_every_s=self.write_every_s or (30.0 if ray else 0.0), compact_above=self.compact_above)


def _unreachable(**places) -> list[str]:
    """One line per bucket that cannot be listed (missing, wrong endpoint, denied), named by its flag."""
    return [f"--{name} {line}" for name, place in places.items() if place and (line := storage.check_reachable(place))]


def _shard(text: str | None):
    try:
        return parse_shard(text)
    except ValueError:
        return None  # reported by problems()


def build_stage(name: str, cfg: PipelineConfig):
    decoding = Decoding(max_new_tokens=cfg.max_new_tokens)
    vllm = dict(vllm_max_model_len=cfg.vllm_max_model_len, vllm_gpu_memory=cfg.vllm_gpu_memory,
                max_retries=cfg.retries)
    frames = FramePolicy(max_frames=cfg.caption_frames)
    if name == "ingest":
        return [IngestStage(videos=storage.location(cfg.videos), manifest=cfg.manifest, domain_rules=cfg.domain_rules)]
    if name == "split":
        return [SplitStage(detector=cfg.detector, policy=cfg.policy)]
    if name == "quality":
        return [QualityStage(config=cfg.quality)]
    if name == "dedup":
        return [DedupStage()]
    if name == "caption":
        return [CaptionStage(model_id=cfg.model, frames=frames, decoding=decoding, batch_size=cfg.batch_size,
                             backend=cfg.backend, **vllm)]
    if name == "dense":
        return [DenseStage(model_id=cfg.model, storyline=cfg.storyline, renderer=cfg.renderer)]
    if name == "ground":
        return [GroundTruthStage(),
                GroundStage(model_id=cfg.model, frames=frames, decoding=decoding, batch_size=cfg.batch_size,
                            backend=cfg.backend, **vllm)]
    if name == "verify":
        return [VerifyStage(model_id=cfg.model, gate=cfg.gate, frames=frames, decoding=decoding,
                            batch_size=cfg.batch_size, backend=cfg.backend, **vllm)]
    if name == "tasks":
        frames = FramePolicy(max_frames=cfg.sample_frames)
        stages = [TasksStage(model_id=cfg.model, frames=frames, segment_frames=FramePolicy(max_frames=cfg.caption_frames),
                             tasks=cfg.tasks, include_rejected=cfg.include_rejected)]
        if cfg.needle and cfg.needle_durations_s and cfg.needle_depths:  # own frame budget, as `eval --needle`
            stages.append(NeedleStage(model_id=cfg.model, durations_s=cfg.needle_durations_s, depths=cfg.needle_depths))
        return stages
    raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")


def run_pipeline(cfg: PipelineConfig, stages: tuple[str, ...] = STAGES, progress: bool = True,
                 videos: frozenset[str] | None = None) -> list[Stats]:
    """The stages in order; with ``videos``, only the items of those videos (a round's pool)."""
    problems = cfg.problems(stages)
    if problems:
        # one problem stays one line on stderr; several are listed under a heading
        raise ValueError("bad configuration: " + problems[0] if len(problems) == 1
                         else "bad configuration:\n  " + "\n  ".join(problems))
    ds = Dataset(cfg.data)
    options = replace(cfg.run_options(), videos=videos)
    results = []
    try:
        for name in (s for s in stages if s not in cfg.skip):
            for stage in build_stage(name, cfg):
                results.append(run_stage(stage, ds, progress=progress, options=options))
    finally:
        if cfg.executor == "ray":
            from curation.executors.ray import shutdown_actors

            shutdown_actors()
    return results
