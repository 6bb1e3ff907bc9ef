"""The decoding choices `train_default_models.py` makes for the bundled models, on selection
stacks and images that are neither training nor held-out data.

The selection data are of both kinds users segment, scored with equal weight: the
`SELECTION` ZYX stacks (their mean) and the `SELECTION_SET` 2D images (pooled). The two
pull apart: on the stacks, where out-of-focus light of the neighbouring slices widens what
a 2D network sees, the best foreground threshold is about 0.85; on the 2D images it is
0.5 (measured 2026-12-02; a choice on the stacks alone cost the held-out 2D images 0.02
of Dice).

The choices themselves are the library's (`napari_unet_stack.training.decoding_choice`,
which `train` also makes on an instance run's validation slices): the foreground threshold
by foreground Dice, then the marker threshold of the model's own decoding by F1 at IoU 0.5
(objects linked across Z in the stacks; three stacks rather than one: the best threshold
differs from stack to stack). Here each stack is an item of the "stacks" group (their
mean) and the 2D images one pooled item of the "images" group.

The network runs once per stack and image (`selection_probabilities`); both choices decode
those probabilities again (the rules `segment` uses).
"""

from __future__ import annotations

from napari_unet_stack.inference import predict
from napari_unet_stack.synthetic import varied_nuclei, varied_set
from napari_unet_stack.training.decoding_choice import choose_decoding

__all__ = ["SELECTION", "SELECTION_SET", "tune_decoding"]

#: the stacks the thresholds are chosen on (seed 3 is also the fast-head selection stack)
SELECTION = {"shape": (16, 256, 256), "seeds": (3, 4, 5)}
#: the 2D images they are chosen on too (the held-out set has seed 7, the training set 100)
SELECTION_SET = {"n": 16, "shape": (256, 256), "seed": 11}
#: how provenance names them
SELECTION_DATA = (f"synthetic.varied_nuclei({SELECTION['shape']}, seed=s, bit_depths=16), "
                  f"s in {list(SELECTION['seeds'])}; synthetic.varied_set({SELECTION_SET['n']}, "
                  f"{SELECTION_SET['shape']}, seed={SELECTION_SET['seed']}); equal weight")


def selection_probabilities(model) -> dict[str, list]:
    """The selection data as `choose_decoding`'s groups: each stack an item of "stacks", the
    2D images one pooled item of "images"; (float32 probabilities, instance ids) pairs."""
    def run(sample):
        return predict(sample.image, model, device="cpu", precision="float32"), sample.instances

    stacks = [varied_nuclei(SELECTION["shape"], seed=seed, bit_depths=16) for seed in SELECTION["seeds"]]
    images = varied_set(SELECTION_SET["n"], SELECTION_SET["shape"], seed=SELECTION_SET["seed"])
    return {"stacks": [[run(s)] for s in stacks], "images": [[run(s) for s in images]]}


def tune_decoding(model, provenance: dict) -> None:
    """Both choices, in that order, recorded in ``provenance`` (``threshold_selection`` and
    ``marker_threshold_selection``)."""
    record = choose_decoding(model, selection_probabilities(model))
    provenance["threshold_selection"] = {
        "data": SELECTION_DATA, "criterion": record["threshold_criterion"], "dice": record["dice"],
        "dice_mean": record["dice_mean"], "threshold": record["threshold"],
    }
    provenance["marker_threshold_selection"] = {
        "data": SELECTION_DATA, "criterion": "F1@0.5 (Z-linked in the stacks), at meta['threshold']",
        "f1": record["f1"], "f1_mean": record["f1_mean"], "marker_threshold": record["marker_threshold"],
    }
