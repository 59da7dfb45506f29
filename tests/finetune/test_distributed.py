"""Two processes on CPU (torchrun, gloo, DDP) log the losses of one process with twice the accumulation."""

import os
import shutil
import socket
import subprocess
import sys

from finetune.config import load_config
from finetune.metrics import read_metrics
from finetune.train import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_on_the_same_global_batch(overrides, tmp_path):
    common = [o for o in overrides if not o.startswith("output_dir=")] + [
        "max_steps=3", "data.tokens_per_batch=700", "data.max_length=700", "lora.dropout=0"]  # masks differ per process
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    two = tmp_path / "two"
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         "-m", "densevid.cli", "train", "lora", *common, f"output_dir={two}", "optim.grad_accum=1"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("adapter:") == 1, "one process reports"
    one = train(load_config("lora", common + [f"output_dir={tmp_path / 'one'}", "optim.grad_accum=2"]),
                log=lambda *_: None)
    a, b = read_metrics(two), read_metrics(tmp_path / "one")
    assert [m["step"] for m in a] == [0, 1, 2]
    assert [m["samples"] for m in a] == [m["samples"] for m in b], "the same samples in each global step"
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-4, ([m["loss"] for m in a], one["losses"])
    assert a[0]["loss"] != a[2]["loss"]
    assert (two / "adapter_model.safetensors").exists()
