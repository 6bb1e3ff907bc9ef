"""Faults a training run meets: non-finite settings and losses (issue 11, item 20), label
values that would size a huge or a needlessly wide model (item 22)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from napari_unet_stack.training import TrainingFailed, TrainSettings, train


# -- item 20: non-finite settings and losses ----------------------------------------------
@pytest.mark.parametrize(
    "name", ["lr", "weight_decay", "dice_weight", "epochs", "fast_head_tolerance"]
)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, np.float32("inf")])
def test_non_finite_settings_are_refused(name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be finite, got {re.escape(repr(value))}"):
        TrainSettings(**{name: value})
    with pytest.raises(ValueError, match=rf"`{name}` must be finite"):
        train(np.zeros((32, 32)), np.zeros((32, 32), np.uint8), **{name: value})


def _finite(model) -> bool:
    return all(
        bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()
    )


@pytest.mark.parametrize("val_fraction", [0.0, 0.3])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_model(
    data, fast, tiny_unet, val_fraction
):
    fast["lr"] = 1e30  # finite, accepted; the first step sends the weights to inf
    stop = r"(the loss is nan at|the weights are not finite after|the outputs are not finite at) step \d+ of 20"
    with pytest.raises(
        TrainingFailed, match=rf"training stopped: {stop}.*`lr` \(now 1e\+30\)"
    ) as caught:
        train(
            data.image,
            data.labels,
            tiny_unet(),
            steps=20,
            val_every=1,
            val_fraction=val_fraction,
            **fast,
        )
    err = caught.value
    assert isinstance(err, ValueError)  # a setting to change: reported like other bad values
    assert 1 <= err.step < 20 and err.history["step"] == list(range(1, err.step + 1))
    if not val_fraction:  # else the validation after the first step finds the weights spoilt
        assert not math.isfinite(err.history["loss"][-1])
    model = err.model  # the weights before they went bad: finite, finished like a result
    assert model is not None and _finite(model) and not model.training
    assert model.training_state is None  # the optimizer state is spoilt: nothing to resume
    assert model.meta["provenance"]["steps"] == err.step
    assert "err.model" in str(err)


def test_a_run_whose_weights_turn_non_finite_on_its_last_step_fails_too(data, fast, tiny_unet):
    fast["lr"] = 1e30  # with this weight decay, the one step sends the weights to inf
    with pytest.raises(
        TrainingFailed, match=r"the weights are not finite after step 1 of 1"
    ) as caught:
        train(
            data.image, data.labels, tiny_unet(), steps=1, val_fraction=0, weight_decay=1e10, **fast
        )
    assert caught.value.model is not None and _finite(caught.value.model)


# -- item 22: label values and the class count ---------------------------------------------
def _mask(data, value):
    return (data.labels > 0).astype(np.int64) * value


@pytest.mark.parametrize("value", [255, 10**6])
def test_a_two_valued_mask_trains_a_binary_model_with_a_note(data, fast, tiny_unet, value):
    note = rf"only the values 0 and {value}: trained as a binary mask.*{value} = foreground"
    with pytest.warns(UserWarning, match=note):
        model, _ = train(
            data.image[:2, :32, :32],
            _mask(data, value)[:2, :32, :32],
            steps=1,
            val_fraction=0,
            **{**fast, "patch_size": 32},
        )
    assert model.out_channels == 2 and model.meta["class_names"] == ["background", "foreground"]
    # the same for a model given: {0, v} fits a two-class model as 0/1
    with pytest.warns(UserWarning, match=note):
        _, history = train(
            data.image, _mask(data, value), tiny_unet(), steps=2, val_every=1, **fast
        )
    assert np.isfinite(history["val_dice"]).all()


def test_labels_0_and_1_need_no_note_and_a_small_value_stays_a_class(
    data, fast, tiny_unet, recwarn
):
    train(data.image, _mask(data, 1), tiny_unet(), steps=1, val_fraction=0, **fast)
    with pytest.raises(
        ValueError, match=r"values up to 3 .* values 0\.\.1"
    ):  # a class index, not a mask
        train(data.image, _mask(data, 3), tiny_unet(), steps=1, val_fraction=0, **fast)
    assert not [w for w in recwarn if "binary" in str(w.message)]


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ((0, 1, 10**6), r"values up to 1000000 \(3 distinct: 0, 1, 1000000\).*remap"),
        ((0, 1, 300), r"values up to 300 \(3 distinct.*at most 256 classes.*np\.unique"),
    ],
)
def test_label_values_far_beyond_a_class_count_are_refused_before_any_allocation(
    data, fast, values, match
):
    labels = np.zeros(data.labels.shape, np.int64)
    labels[:, :10] = values[1]
    labels[:, 20:30] = values[2]
    with pytest.raises(ValueError, match=match):
        train(data.image, labels, steps=1, **fast)


def test_many_distinct_values_are_refused_as_instance_labels(data, fast):
    labels = np.arange(np.prod(data.labels.shape)).reshape(data.labels.shape) % 400
    with pytest.raises(ValueError, match=r"400 distinct.*Instance labels.*labels > 0"):
        train(data.image, labels, steps=1, **fast)
