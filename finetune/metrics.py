"""Training metrics: one JSON object per logged step in ``metrics.jsonl``, the same scalars in TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """Written by the main process only. On resume, records at or after the resumed step are dropped first,
    so the file reads as one uninterrupted run."""

    def __init__(self, output_dir: str | Path, start_step: int, tensorboard: bool, enabled: bool = True):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [line for line in read_metrics_lines(self.path) if json.loads(line)["step"] < start_step]
        self.path.write_text("".join(line + "\n" for line in kept))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=start_step or None)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key.replace("_", "/", 1) if key.startswith("lr_") else key, value,
                                       record["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def read_metrics(output_dir: str | Path) -> list[dict]:
    return [json.loads(line) for line in read_metrics_lines(Path(output_dir) / "metrics.jsonl")]
