"""Captioning again with an adapter adds a generation beside the first; a rerun skips finished work."""

import shutil

from curation.executors import run_stage
from curation.store import Dataset
from model.structured import Decoding
from synth.captions import CaptionStage


def test_adapter_captions_go_beside_the_base_ones(built_dataset, tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model

    from finetune.modules import lora_target_regex
    from model.loader import load_model

    cfg, _ = built_dataset
    data = tmp_path / "ds"
    shutil.copytree(cfg.data, data)
    ds = Dataset(data)
    lm = load_model(tiny_model, device="cpu")
    adapter = tmp_path / "adapter"
    get_peft_model(lm.model, LoraConfig(r=4, target_modules=lora_target_regex(False))).save_pretrained(adapter)
    lm.processor.save_pretrained(adapter)

    n_segments = len(ds.rows("segments"))
    stage = CaptionStage(model_id=str(adapter), decoding=Decoding(max_new_tokens=512), batch_size=8)
    stats = run_stage(stage, ds, progress=False, max_items=2)
    assert stats.counts["rows_written"] == 2
    models = ds.sql("SELECT model, count(*) AS n FROM captions GROUP BY model ORDER BY n DESC").to_pylist()
    assert models == [{"model": str(cfg.model), "n": n_segments}, {"model": str(adapter), "n": 2}]
    again = run_stage(stage, ds, progress=False, max_items=2)
    assert again.counts["skipped_done"] == 2 and again.counts["rows_written"] == 2  # the next two
    assert len(ds.rows("captions")) == n_segments + 4
