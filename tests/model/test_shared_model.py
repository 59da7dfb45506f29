"""One loaded model per process for the stages of a run (caption, ground and verify ask for the same one)."""

from model.loader import shared_model


def test_the_same_checkpoint_is_loaded_once(tiny_model, tmp_path):
    first = shared_model(tiny_model)
    assert shared_model(str(tiny_model)) is first
    # another checkpoint replaces it (one model is kept at a time)
    import shutil

    other = tmp_path / "copy"
    shutil.copytree(tiny_model, other)
    second = shared_model(other)
    assert second is not first and shared_model(other) is second
    assert shared_model(tiny_model) is not first  # the first was dropped, so it loads again
