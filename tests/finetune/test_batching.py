"""Token-budget batching, data positions, the schedule, module groups and eval scoring: pure functions."""

import numpy as np
import pytest

from finetune.config import TrainConfig
from finetune.data import Position, RankBatches, global_stream, plan_batches
from curation.times import parse_span
from finetune.evaluate import accuracy_grid, grounding_summary
from synth.metrics import temporal_iou
from finetune.modules import group_of
from finetune.train import lr_scale

LENGTHS = np.random.default_rng(0).integers(100, 2000, 400).tolist()


def _padding(batches, lengths):
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - real / padded


def test_plan_covers_every_sample_once_within_the_budget():
    batches = plan_batches(LENGTHS, 4096, 16, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    assert all(len(b) * max(LENGTHS[i] for i in b) <= 4096 for b in batches)
    assert all(len(b) <= 16 for b in batches)
    packed = plan_batches(LENGTHS, 4096, 16, seed=0, epoch=0, packing=True)
    assert all(sum(LENGTHS[i] for i in b) <= 4096 for b in packed)
    assert len(packed) < len(batches), "packing fits more samples per batch"


def test_length_buckets_cut_padding_against_random_batches():
    batches = plan_batches(LENGTHS, 4096, 16, seed=0, epoch=0)
    rng = np.random.default_rng(1)
    order = rng.permutation(len(LENGTHS)).tolist()
    sizes = [len(b) for b in batches]
    random_batches, a = [], 0
    for n in sizes:  # the same batch sizes, filled in random order
        random_batches.append(order[a : a + n])
        a += n
    bucketed, shuffled = _padding(batches, LENGTHS), _padding(random_batches, LENGTHS)
    assert bucketed < 0.05 and shuffled > 0.3, (bucketed, shuffled)


def test_plan_is_a_function_of_seed_and_epoch():
    a, b = plan_batches(LENGTHS, 4096, 16, 0, 0), plan_batches(LENGTHS, 4096, 16, 0, 0)
    assert a == b
    assert plan_batches(LENGTHS, 4096, 16, 0, 1) != a and plan_batches(LENGTHS, 4096, 16, 1, 0) != a


def test_ranks_split_the_global_stream_and_positions_resume_it():
    def plan(epoch):
        return [[epoch * 10 + i] for i in range(3)]

    ranks = [RankBatches(plan, (0, 0), r, 2) for r in range(2)]
    firsts = [list(_take(iter(rb), 3)) for rb in ranks]
    assert firsts == [[[0], [2], [11]], [[1], [10], [12]]]
    pos = Position(plan, (0, 0), per_step=2)
    assert [pos.advance() for _ in range(3)] == [(0, 2), (1, 1), (1, 3)]
    resumed = [b for _, _, b in _take(global_stream(plan, 1, 1), 2)]
    assert resumed == [[11], [12]]


def _take(it, n):
    for _ in range(n):
        yield next(it)


def test_cosine_schedule_with_warmup():
    cfg = TrainConfig(max_steps=12)
    cfg.optim.warmup_steps, cfg.optim.min_lr_ratio = 2, 0.1
    scales = [lr_scale(s, cfg) for s in range(13)]
    assert scales[0] == pytest.approx(0.5) and scales[1] == pytest.approx(1.0) and scales[2] == pytest.approx(1.0)
    assert scales[7] == pytest.approx(0.55) and scales[12] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(scales[2:], scales[3:])), "decays monotonically after warmup"


def test_warmup_ends_within_a_short_run():
    cfg = TrainConfig(max_steps=4)
    cfg.optim.warmup_steps, cfg.optim.min_lr_ratio = 20, 0.1  # the lora preset's warmup
    scales = [lr_scale(s, cfg) for s in range(4)]
    assert scales[0] == pytest.approx(1.0), "a quarter of 4 steps: one step of warmup, at the peak"
    assert scales == sorted(scales, reverse=True) and scales[3] == pytest.approx(0.1 + 0.9 * 0.25)
    cfg = TrainConfig(max_steps=40)
    cfg.optim.warmup_steps = 20
    assert [lr_scale(s, cfg) for s in (0, 9)] == [pytest.approx(0.1), pytest.approx(1.0)]  # 10 steps of warmup


def test_module_groups_put_deepstack_mergers_with_the_merger():
    assert group_of("model.visual.deepstack_merger_list.1.linear_fc1.weight") == "merger"
    assert group_of("base_model.model.model.visual.merger.modules_to_save.default.linear_fc2.bias") == "merger"
    assert group_of("model.visual.patch_embed.proj.weight") == "vision"
    assert group_of("model.visual.blocks.0.attn.qkv.lora_A.default.weight") == "vision"
    assert group_of("model.language_model.embed_tokens.weight") == "llm"
    assert group_of("lm_head.weight") == "llm"


def test_grounding_and_needle_scoring():
    assert parse_span("it is <2.5 - 7 seconds> I think") == (2.5, 7.0)
    assert parse_span("somewhere around 3 s") is None
    assert temporal_iou((2.0, 6.0), (4.0, 8.0)) == pytest.approx(1 / 3)
    assert temporal_iou(None, (4.0, 8.0)) == 0.0 and temporal_iou((5.0, 5.0), (4.0, 8.0)) == 0.0
    assert grounding_summary([1.0, 0.6, 0.4, 0.0]) == {"n": 4, "miou": 0.5, "r@0.3": 0.75, "r@0.5": 0.5,
                                                        "r@0.7": 0.25}
    items = [dict(duration_s=8.0, depth=0.1, correct=True), dict(duration_s=8.0, depth=0.1, correct=False),
             dict(duration_s=16.0, depth=0.9, correct=True)]
    assert accuracy_grid(items, [8.0, 16.0], [0.1, 0.9]) == [[0.5, None], [None, 1.0]]
