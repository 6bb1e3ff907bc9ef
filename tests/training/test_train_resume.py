"""Cancel, resume (the same run as an uninterrupted one) and fine-tuning."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_unet_stack.checkpoints import load_model, save_model
from napari_unet_stack.models import UNet
from napari_unet_stack.training import (
    TrainingCancelled,
    iter_train,
    train,
)


def test_cancel_raises_with_the_best_model_so_far(data, fast, tiny_unet):
    event = threading.Event()

    def progress(step, total, info):
        if step == 3:
            event.set()

    with pytest.raises(TrainingCancelled) as caught:
        train(
            data.image,
            data.labels,
            tiny_unet(),
            steps=100,
            val_every=2,
            progress=progress,
            cancel=event,
            **fast,
        )
    err = caught.value
    assert err.step == 3 and len(err.history["loss"]) == 3
    assert isinstance(err.model, UNet) and not err.model.training
    # the weights of the best step; the training state of the last one (resume goes on there)
    assert err.model.training_state["step"] == 3 and "weights" in err.model.training_state
    assert (
        err.model.meta["provenance"]["steps"] == 3
        and err.model.meta["provenance"]["best_step"] == 2
    )


def test_cancel_before_the_first_step(data, fast, tiny_unet):
    event = threading.Event()
    event.set()
    with pytest.raises(TrainingCancelled) as caught:
        train(data.image, data.labels, tiny_unet(), steps=5, cancel=event, **fast)
    assert caught.value.model is None and caught.value.step == 0


@pytest.mark.slow
def test_resume_from_our_checkpoint(trained, data, tmp_path, fast, tiny_unet):
    model, _, _ = trained
    path = save_model(model, tmp_path / "first.pt")
    gen = iter_train(data.image, data.labels, str(path), steps=4, val_fraction=0, **fast)
    next(gen)  # data prepared, weights loaded, nothing trained yet
    resumed, history2 = _drain(gen)
    # it continues from the stored weights: the loss starts where the first run ended
    fresh = train(data.image, data.labels, tiny_unet(), steps=4, val_fraction=0, **fast)[1]
    assert np.mean(history2["loss"]) < 0.8 * np.mean(fresh["loss"])
    prov = resumed.meta["provenance"]
    assert prov["steps"] == 4 and prov["total_steps"] == 54 and prov["previous"]["steps"] == 50
    assert resumed.meta["class_names"] == model.meta["class_names"]
    # fine-tuning (resume=False): a fresh optimizer and schedule, steps numbered from 1
    assert history2["step"] == [1, 2, 3, 4] and "resumed_from_step" not in prov
    assert history2["lr"] == fresh["lr"]
    assert resumed.training_state["step"] == 4 and resumed.training_state["total"] == 4


def _straight_and_cancelled(data, fast, tiny_unet, *, steps, cancel_at, **kw):
    """(model, history) of an uninterrupted run, and the TrainingCancelled of the same run
    stopped after ``cancel_at`` steps (same seed, same initial weights)."""
    torch.manual_seed(0)
    straight = train(data.image, data.labels, tiny_unet(), steps=steps, **kw, **fast)
    event = threading.Event()

    def progress(step, total, info):
        if step == cancel_at:
            event.set()

    torch.manual_seed(0)
    with pytest.raises(TrainingCancelled) as caught:
        train(
            data.image,
            data.labels,
            tiny_unet(),
            steps=steps,
            progress=progress,
            cancel=event,
            **kw,
            **fast,
        )
    return straight, caught.value


def test_cancelled_run_resumes_from_its_checkpoint_to_the_planned_total(
    data, tmp_path, fast, tiny_unet
):
    (straight, straight_history), err = _straight_and_cancelled(
        data, fast, tiny_unet, steps=12, cancel_at=5, val_fraction=0
    )
    state = err.model.training_state
    assert (state["step"], state["total"], state["finished"]) == (5, 12, False)
    assert state["lr"] == fast["lr"] and torch.equal(
        state["optimizer"]["state"][0]["step"], torch.tensor(5.0)
    )
    path = save_model(err.model, tmp_path / "cancelled.pt")

    calls = []
    no_lr = {k: v for k, v in fast.items() if k != "lr"}  # lr: the checkpoint's
    resumed, history = train(
        data.image,
        data.labels,
        str(path),
        resume=True,
        val_fraction=0,
        progress=lambda step, total, info: calls.append((step, total)),
        **no_lr,
    )
    # steps 6..12 on the planned schedule: same learning rates as the uninterrupted run
    assert history["step"] == list(range(6, 13)) and calls[0] == (5, 12) and calls[-1] == (12, 12)
    assert history["lr"] == straight_history["lr"][5:]
    # optimizer moments, schedule and patch sampling carried on: the very same run
    np.testing.assert_allclose(history["loss"], straight_history["loss"][5:], rtol=1e-5)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    done = resumed.training_state
    assert (done["step"], done["total"], done["finished"]) == (12, 12, True)
    assert torch.equal(done["optimizer"]["state"][0]["step"], torch.tensor(12.0))
    prov = resumed.meta["provenance"]
    assert prov["resumed_from_step"] == 5 and prov["steps"] == 7 and prov["total_steps"] == 12
    assert prov["best_step"] == 12 and prov["lr"] == fast["lr"]
    # it had finished: resuming again needs a number of steps
    with pytest.raises(ValueError, match="planned 12 steps; pass `steps`"):
        train(data.image, data.labels, resumed, resume=True, **fast)


def test_cancelled_run_with_validation_resumes_from_its_last_step(data, fast, tiny_unet):
    # float32: this test's premise, a validation after step 2 beating step 2's (so both runs
    # return the same best weights), holds for the float32 trajectory of this tiny run; in
    # bf16 (precision "auto" on CPUs with native bf16) its validation Dice peaks at step 2
    # (0.898 vs 0.890-0.892 later; losses within 0.005 of float32's)
    fast["precision"] = "float32"
    (straight, straight_history), err = _straight_and_cancelled(
        data, fast, tiny_unet, steps=8, cancel_at=3, val_every=2
    )
    # the cancelled model holds the step-2 weights (last validation), its state is step 3's
    assert err.model.meta["provenance"]["best_step"] == 2
    assert err.model.training_state["step"] == 3
    resumed, history = train(data.image, data.labels, err.model, resume=True, val_every=2, **fast)
    # issue 11, item 25: steps 4..8, the very same run as the uninterrupted one
    assert history["step"] == list(range(4, 9)) and history["val_step"] == [4, 6, 8]
    assert history["lr"] == straight_history["lr"][3:]
    np.testing.assert_allclose(history["loss"], straight_history["loss"][3:], rtol=1e-5)
    np.testing.assert_allclose(history["val_dice"], straight_history["val_dice"][1:], rtol=1e-5)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_resume_goes_on_from_the_last_step_not_the_best(
    data, fast, tiny_unet, tmp_path, monkeypatch
):
    """Issue 11, item 25: a run whose best validation is at step 2 of 8, resumed with
    ``steps=3``, records steps 9-11; without ``steps`` it has run its planned 8 steps."""
    import napari_unet_stack.training.run as run_module

    real, scores = run_module.validation_metrics, iter([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])

    def falling(*args, **kwargs):
        return {**real(*args, **kwargs), "dice": next(scores)}

    monkeypatch.setattr(run_module, "validation_metrics", falling)
    model, _ = train(data.image, data.labels, tiny_unet(), steps=8, val_every=2, **fast)
    assert model.meta["provenance"]["best_step"] == 2
    state = model.training_state
    assert (state["step"], state["total"], state["finished"]) == (8, 8, True)
    assert torch.equal(state["optimizer"]["state"][0]["step"], torch.tensor(8.0))
    assert any(not torch.equal(state["weights"][k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="already ran its planned 8 steps; pass `steps`"):
        train(data.image, data.labels, model, resume=True, **fast)
    path = save_model(model, tmp_path / "best_at_2.pt")  # the last weights travel in the file
    more, history = train(
        data.image, data.labels, path, resume=True, steps=3, val_fraction=0, **fast
    )
    assert history["step"] == [9, 10, 11]
    assert more.meta["provenance"]["resumed_from_step"] == 8
    assert (more.training_state["step"], more.training_state["total"]) == (11, 11)
    assert "weights" not in more.training_state  # no validation: the last weights are the result


@pytest.mark.slow
def test_resume_with_steps_runs_that_many_more(trained, data, tmp_path, fast):
    from napari_unet_stack.training.state import lr_lambda

    model, _, _ = trained
    reached = model.training_state["step"]
    assert reached == 50 and model.training_state["finished"]  # the last step, not the best
    path = save_model(model, tmp_path / "first.pt")  # the fixture's model stays untouched
    more, history = train(
        data.image, data.labels, path, resume=True, steps=4, val_fraction=0, **fast
    )
    assert history["step"] == [reached + k for k in range(1, 5)]
    # the schedule is stretched to end after the 4 new steps (same warmup)
    schedule = lr_lambda(reached + 4, model.training_state["warmup"])
    assert history["lr"] == pytest.approx([fast["lr"] * schedule(s - 1) for s in history["step"]])
    state = more.training_state
    assert (state["step"], state["total"]) == (reached + 4, reached + 4)
    assert torch.equal(state["optimizer"]["state"][0]["step"], torch.tensor(float(reached + 4)))
    assert more.meta["provenance"]["resumed_from_step"] == reached


def test_resume_needs_a_training_state(data, tmp_path, fast, tiny_unet):
    with pytest.raises(ValueError, match="needs `model`"):
        train(data.image, data.labels, resume=True, steps=2, **fast)
    with pytest.raises(ValueError, match="training state"):
        train(data.image, data.labels, tiny_unet(), resume=True, steps=2, **fast)
    model, _ = train(data.image, data.labels, tiny_unet(), steps=2, val_fraction=0, **fast)
    path = save_model(model, tmp_path / "weights_only.pt", include_training_state=False)
    with pytest.raises(ValueError, match="include_training_state=False"):
        train(data.image, data.labels, path, resume=True, steps=2, **fast)
    with pytest.raises(TypeError, match="`resume`"):
        train(data.image, data.labels, model, resume="yes", steps=2, **fast)
    # a state made for another network is refused before any step
    other = tiny_unet(n_classes=3)
    other.training_state = model.training_state
    with pytest.raises(ValueError, match="does not fit the model"):
        train(data.image, data.labels, other, resume=True, steps=2, **fast)


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_fine_tune_an_imported_network(data, tmp_path):
    from napari_unet_stack.models.reference import MilesialUNet

    # a milesial/Pytorch-UNet checkpoint: a bare state dict, preprocessing "divide by 255"
    torch.save(
        MilesialUNet(1, 2, bilinear=False, base_channels=4).state_dict(), tmp_path / "milesial.pth"
    )
    net = load_model(tmp_path / "milesial.pth")
    norm = dict(net.meta.get("normalization") or {})
    before = [p.detach().clone() for p in net.parameters()]
    tuned, _ = train(
        data.image, data.labels, net, steps=2, patch_size=64, batch_size=2, device="cpu"
    )
    assert tuned is net
    if norm:
        assert tuned.meta["normalization"] == {**norm, **tuned.meta["normalization"]}  # kept
    assert any(not torch.equal(a, b) for a, b in zip(before, tuned.parameters(), strict=True))
    # straight from the file, too
    again, _ = train(
        data.image,
        data.labels,
        str(tmp_path / "milesial.pth"),
        steps=1,
        val_fraction=0,
        patch_size=64,
        batch_size=2,
        device="cpu",
    )
    assert type(again) is type(net)
