"""An instance model's decoding thresholds chosen on labelled data (`training.decoding_choice`),
by the library and by `train(instances=True)` on its validation slices."""

from __future__ import annotations

import numpy as np
import pytest

import napari_unet_stack as nus
from napari_unet_stack.models import UNet
from napari_unet_stack.training import instance_meta, train
from napari_unet_stack.training.decoding_choice import (
    MIN_OBJECTS,
    choose_decoding,
    choose_on_validation,
)

from .test_train_instances import touching_triples


def instance_net():
    net = UNet(1, 3, base_channels=4, depth=1)
    net.meta.update(instances=instance_meta(), class_values=[0, 1, 1],
                    class_names=["background", "interior", "boundary"])
    return net


def rows_of_three(shape=(40, 120), radius=6):
    """(probabilities (3, Y, X), ids): rows of three touching discs (ids by nearest centre).

    P(foreground) is 0.99 on the discs, 0.55 on a 1-px ring outside them and 0.1 elsewhere,
    so only thresholds in [0.55, 0.99) draw the discs exactly. P(interior) is 0.97 in a core
    of each disc and 0.75 on the line joining the centres, so marker thresholds below 0.75
    give one marker per row (three nuclei merged: IoU 1/3 with each) and from 0.8 on one
    per disc."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    ids = np.zeros(shape, np.int32)
    fg = np.full(shape, 0.1, np.float32)
    interior = np.zeros(shape, np.float32)
    n = 0
    for cy in (radius + 4, h - radius - 5):
        centres = [(cy, x) for x in range(radius + 4, w - radius, int(1.6 * radius))][:3]
        dist = np.stack([np.hypot(yy - y, xx - x) for y, x in centres])
        nearest = dist.argmin(0)
        ring = (dist.min(0) > radius) & (dist.min(0) <= radius + 1)
        fg[ring] = 0.55
        on_line = (np.abs(yy - cy) <= 1) & (xx >= centres[0][1]) & (xx <= centres[-1][1])
        interior[on_line] = 0.75
        for k in range(len(centres)):
            n += 1
            disc = (dist[k] <= radius) & (nearest == k)
            ids[disc] = n
            fg[disc] = 0.99
            interior[dist[k] <= radius / 2] = 0.97
    interior = np.minimum(interior, fg)
    probs = np.stack([1 - fg, interior, fg - interior])
    return probs, ids


def test_thresholds_are_chosen_by_foreground_dice_then_f1():
    probs, ids = rows_of_three()
    net = instance_net()
    record = choose_decoding(net, {"data": [[(probs, ids)]]})
    # the first of the thresholds that draw the discs exactly, then the first marker threshold
    # that parts the rows
    assert record["threshold"] == net.meta["threshold"] == 0.6
    assert record["dice"]["0.7"]["data"] == 1.0 and record["dice"]["0.5"]["data"] < 1.0
    assert record["marker_threshold"] == net.meta["instances"]["marker_threshold"] == 0.8
    assert record["f1"]["0.7"]["data"] == 0.0 and record["f1"]["0.8"]["data"] == 1.0
    # what segment's own decoding then gives from these probabilities: the truth
    labels = nus.postprocess.decode_probabilities(probs, net)
    assert nus.training.match_instances(labels, ids).f1 == 1.0


def test_a_tie_keeps_the_models_own_values():
    probs, ids = rows_of_three()
    net = instance_net()
    net.meta["threshold"] = 0.75
    net.meta["instances"]["marker_threshold"] = 0.9
    record = choose_decoding(net, {"data": [[(probs, ids)]]})
    assert (record["threshold"], record["marker_threshold"]) == (0.75, 0.9)


def test_groups_weigh_equally_whatever_their_size():
    probs, ids = rows_of_three()
    wide = probs.copy()
    wide[0][ids == 0] = np.minimum(wide[0][ids == 0], 0.48)  # P(fg) 0.52 around everything
    net = instance_net()
    # one group drawn exactly from 0.55 up, the other only at 0.5: ten copies of the first
    # in one item weigh as one item of the second
    record = choose_decoding(net, {"exact": [[(probs, ids)] * 10], "wide": [[(wide, ids)]]})
    mean = {t: np.mean([record["dice"][t]["exact"], record["dice"][t]["wide"]]) for t in record["dice"]}
    assert record["dice_mean"] == {t: round(float(v), 4) for t, v in mean.items()}
    assert record["threshold"] == float(max(mean, key=lambda t: round(float(mean[t]), 4)))


def test_empty_groups_are_an_error():
    with pytest.raises(ValueError, match="at least one group"):
        choose_decoding(instance_net(), {"data": []})


class _Slice:
    def __init__(self, ids, painted=False):
        self.instances = ids
        self.target = np.where(ids > 0, 1, -1 if painted else 0)


def test_validation_too_small_or_painted_is_skipped_and_changes_nothing():
    probs, ids = rows_of_three()
    net = instance_net()
    few = choose_on_validation(net, [_Slice(ids)], lambda s: probs)
    assert few == {"skipped": f"the validation slices hold 6 objects, fewer than {MIN_OBJECTS}"}
    painted = choose_on_validation(net, [_Slice(ids, painted=True)] * 10, lambda s: probs)
    assert "painted" in painted["skipped"]
    plain = UNet(1, 2, base_channels=4, depth=1)
    assert choose_on_validation(plain, [_Slice(ids)] * 10, lambda s: probs) == {"skipped": "not an instance model"}
    assert "threshold" not in net.meta and net.meta["instances"]["marker_threshold"] == 0.5
    enough = choose_on_validation(net, [_Slice(ids)] * 9, lambda s: probs)  # 54 objects
    assert (enough["threshold"], enough["marker_threshold"]) == (0.6, 0.8)
    assert enough["data"] == "the 9 validation slice(s), 54 objects"


@pytest.fixture(scope="module")
def many_triples():
    """Eight images of rows of touching triples (27 nuclei each): two of them validate."""
    pairs = [touching_triples((128, 128), radius=6, seed=s) for s in range(8)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_train_chooses_the_decoding_on_its_validation_slices(many_triples, fast, tmp_path):
    images, ids = many_triples
    assert 2 * min(len(np.unique(i)) - 1 for i in ids) >= MIN_OBJECTS
    model, _ = train(images, ids, instances=True, steps=2, val_fraction=0.25, **fast)
    chosen = model.meta["provenance"]["decoding"]
    assert chosen["data"].startswith("the 2 validation slice(s)")
    assert model.meta["threshold"] == chosen["threshold"]
    assert model.meta["instances"]["marker_threshold"] == chosen["marker_threshold"]
    assert set(chosen["dice"]) == {str(t) for t in nus.training.decoding_choice.FOREGROUND_THRESHOLDS}
    # segment decodes with them by default, and they survive a save
    assert nus.labels.model_threshold(model) == chosen["threshold"]
    loaded = nus.load_model(nus.save_model(model, tmp_path / "m.pt"))
    assert loaded.meta["threshold"] == chosen["threshold"]
    assert loaded.meta["instances"]["marker_threshold"] == chosen["marker_threshold"]


def test_train_keeps_the_thresholds_when_asked_or_when_it_cannot_choose(many_triples, fast, triples_small):
    images, ids = many_triples
    model, _ = train(images, ids, instances=True, steps=2, val_fraction=0.25, tune_decoding=False, **fast)
    assert "decoding" not in model.meta["provenance"]
    assert "threshold" not in model.meta and model.meta["instances"]["marker_threshold"] == 0.5
    image, small = triples_small  # one image: its last rows validate, too few objects
    model, _ = train(image, small, instances=True, steps=2, **fast)
    assert "fewer than" in model.meta["provenance"]["decoding"]["skipped"]
    assert "threshold" not in model.meta


@pytest.fixture(scope="module")
def triples_small():
    return touching_triples((64, 128), radius=8, seed=1)


def test_tune_decoding_must_be_a_flag():
    with pytest.raises(TypeError, match="`tune_decoding` must be True or False"):
        nus.training.TrainSettings(tune_decoding="yes")
