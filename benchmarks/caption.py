"""Captioning throughput on the tiny model: batched vs one segment at a time, measured in the same run.

    python benchmarks/caption.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    from curation.frames import FramePolicy
    from curation.executors import run_stage
    from curation.stages import IngestStage, SplitStage
    from curation.store import Dataset
    from model.structured import Decoding
    from model.tiny import build_tiny_checkpoint
    from synth.captions import CaptionStage
    from synth.videos import DEMO_CORPUS, make_corpus

    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_corpus(tmp / "videos", DEMO_CORPUS)
        model = build_tiny_checkpoint(tmp / "tiny")
        base = Dataset(tmp / "base")
        run_stage(IngestStage(videos=tmp / "videos"), base, progress=False)
        run_stage(SplitStage(), base, progress=False)
        n_segments = len(base.rows("segments"))
        report = {"segments": n_segments}
        for batch in (1, 8):
            ds_dir = tmp / f"b{batch}"
            shutil.copytree(base.root, ds_dir)
            ds = Dataset(ds_dir)
            stage = CaptionStage(model_id=str(model), frames=FramePolicy(max_frames=16),
                                 decoding=Decoding(max_new_tokens=512), batch_size=batch)
            t = time.perf_counter()
            stats = run_stage(stage, ds, progress=False)
            secs = time.perf_counter() - t
            report[f"batch{batch}_segments_per_s"] = round(n_segments / secs, 2)
            report[f"batch{batch}_failed"] = stats.n_failed
            if batch == 1:
                tokens = [stage.visual_tokens(dict(s, **_video(ds, s))) for s in ds.rows("segments")]
                report["visual_tokens_per_segment_mean"] = round(sum(tokens) / len(tokens), 1)
                report["visual_tokens_per_segment_max"] = max(tokens)
        report["batched_speedup"] = round(report["batch8_segments_per_s"] / report["batch1_segments_per_s"], 2)
        print(json.dumps(report, indent=1))


def _video(ds, seg):
    v = next(v for v in ds.rows("videos") if v["video_id"] == seg["video_id"])
    return {"fps": v["fps"], "height": v["height"], "width": v["width"]}


if __name__ == "__main__":
    main()
