"""Pipeline config and the ordered list of stages; the CLI only fills the config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from curation.domains import parse_rule
from curation.frames import FramePolicy
from curation.jobs import Stats, parse_shard, run_stage
from curation.scenes import DetectorConfig, SegmentPolicy
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset
from model.loader import DEFAULT_MODEL
from model.structured import Decoding
from synth.captions import CaptionStage
from synth.dense import DenseStage
from synth.grounding import GroundStage, GroundTruthStage
from synth.needle import NeedleStage
from synth.tasks import TasksStage

STAGES = ("ingest", "split", "caption", "dense", "ground", "tasks")


@dataclass
class PipelineConfig:
    data: Path
    videos: Path | None = None
    model: str = DEFAULT_MODEL
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    policy: SegmentPolicy = field(default_factory=SegmentPolicy)
    caption_frames: int = 16
    sample_frames: int = 64
    batch_size: int = 4
    max_new_tokens: int = 512
    workers: int = 1
    storyline: bool = False
    renderer: str = "seconds"
    backend: str = "transformers"
    shard: str | None = None
    needle_durations_s: tuple[float, ...] = (20.0, 40.0)
    needle_depths: tuple[float, ...] = (0.1, 0.5, 0.9)
    manifest: Path | None = None
    domain_rules: tuple[str, ...] = ()

    def problems(self, stages: tuple[str, ...]) -> list[str]:
        out = self.detector.problems() + self.policy.problems()
        if "ingest" in stages and not self.videos:
            out.append("ingest needs --videos DIR (a folder of video files; subfolders name domains)")
        try:
            [parse_rule(r) for r in self.domain_rules]
        except ValueError as e:
            out.append(str(e))
        if self.manifest and not Path(self.manifest).exists():
            out.append(f"--manifest {self.manifest} not found")
        if self.backend not in ("transformers", "vllm"):
            out.append(f"--backend {self.backend!r}: choose transformers or vllm")
        if self.workers < 1:
            out.append(f"--workers {self.workers} must be >= 1")
        try:
            parse_shard(self.shard)
        except ValueError as e:
            out.append(str(e))
        if self.caption_frames < 2 or self.caption_frames % 2:
            out.append(f"--caption-frames {self.caption_frames} must be even and >= 2")
        return out


def build_stage(name: str, cfg: PipelineConfig):
    decoding = Decoding(max_new_tokens=cfg.max_new_tokens)
    frames = FramePolicy(max_frames=cfg.caption_frames)
    if name == "ingest":
        return [IngestStage(videos=Path(cfg.videos), manifest=cfg.manifest, domain_rules=cfg.domain_rules)]
    if name == "split":
        return [SplitStage(detector=cfg.detector, policy=cfg.policy)]
    if name == "caption":
        return [CaptionStage(model_id=cfg.model, frames=frames, decoding=decoding, batch_size=cfg.batch_size,
                             backend=cfg.backend)]
    if name == "dense":
        return [DenseStage(model_id=cfg.model, storyline=cfg.storyline, renderer=cfg.renderer)]
    if name == "ground":
        return [GroundTruthStage(),
                GroundStage(model_id=cfg.model, frames=frames, decoding=decoding, batch_size=cfg.batch_size,
                            backend=cfg.backend)]
    if name == "tasks":
        frames = FramePolicy(max_frames=cfg.sample_frames)
        stages = [TasksStage(model_id=cfg.model, frames=frames, segment_frames=FramePolicy(max_frames=cfg.caption_frames))]
        if cfg.needle_durations_s and cfg.needle_depths:
            stages.append(NeedleStage(model_id=cfg.model, durations_s=cfg.needle_durations_s,
                                      depths=cfg.needle_depths, frames=frames))
        return stages
    raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")


def run_pipeline(cfg: PipelineConfig, stages: tuple[str, ...] = STAGES, progress: bool = True) -> list[Stats]:
    problems = cfg.problems(stages)
    if problems:
        raise ValueError("bad configuration:\n  " + "\n  ".join(problems))
    ds = Dataset(cfg.data)
    results = []
    for name in stages:
        for stage in build_stage(name, cfg):
            results.append(run_stage(stage, ds, progress=progress, workers=cfg.workers, shard=parse_shard(cfg.shard)))
    return results
