"""One run of the training loop, set up by `plan_run`: its steps, validations and result.

`TrainRun` owns the optimizer, schedule, GradScaler, patch sampler, history and the best
weights so far; `iter_train` calls `TrainRun.step` per step and `TrainRun.finish` at the end
(or on cancel).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ..devices import channels_last_for, precision_name
from ..models import NestedUNet, SegmentationNetwork, unwrap_logits
from .augment import PatchSampler
from .decoding_choice import choose_on_validation
from .errors import TrainingFailed
from .evaluate import slice_probabilities, validation_metrics
from .fast_head import choose_fast_head
from .losses import multi_head_loss
from .prefetch import BatchPrefetcher
from .provenance import RunRecord, provenance
from .setup import Plan
from .state import cpu_copy, load_optimizer, lr_lambda, snapshot

__all__ = ["HISTORY_KEYS", "TrainRun", "finite_weights", "head_outputs"]

#: The history's lists: one entry per step, then one per validation.
HISTORY_KEYS = (
    "step", "loss", "lr", "seconds",
    "val_step", "val_loss", "val_dice", "val_iou", "val_dice_per_class", "val_iou_per_class",
    "val_instance_f1",
)  # fmt: skip
#: Gradients are clipped to this norm.
CLIP_NORM = 5.0
#: So many non-finite losses in a row stop the run.
MAX_BAD_STEPS = 5


def head_outputs(model: SegmentationNetwork, x: torch.Tensor) -> list[torch.Tensor]:
    """Every head's logits for deep supervision, else the single output."""
    if getattr(model, "deep_supervision", False) and hasattr(model, "forward_heads"):
        return list(model.forward_heads(x))
    return [unwrap_logits(model(x))]


def finite_weights(model: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``model`` is finite."""
    return all(
        bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()
    )


class TrainRun:
    """The optimizer side of a planned run, and its progress (history, best weights)."""

    def __init__(self, plan: Plan, t0: float) -> None:
        self.plan = plan
        self.t0 = t0
        s = plan.settings
        net = plan.net
        self.sampler = PatchSampler(
            plan.train_slices, patch_shape=plan.image_shape, label_shape=plan.label_shape,
            cfg=s.augment, rng=plan.rng, sparse=s.sparse,
        )  # fmt: skip
        net.to(plan.device)
        # channels-last on CUDA and oneDNN CPUs, as the inference engine (devices.py)
        self.channels_last = channels_last_for(plan.device)
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        net.train()
        self.prefetch: BatchPrefetcher | None = None  # started by the first step
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=plan.lr, weight_decay=plan.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=plan.autocast_dtype == torch.float16)
        self.warmup = (
            self._resume_optimizer()
            if plan.resumed is not None
            else min(100, max(1, plan.total // 20))
        )
        schedule = lr_lambda(plan.total, self.warmup)
        start = plan.start
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: schedule(start + k)
        )
        self.precision = precision_name(plan.autocast_dtype)
        # validation (and the UNet++ head choice) scores in float32 off CUDA: exact scores
        # for the best-model choice, at a small share of the run (a tenth of the steps)
        self.val_precision = self.precision if plan.device.type == "cuda" else "float32"
        self.history: dict[str, list] = {key: [] for key in HISTORY_KEYS}
        self.best: dict[str, Any] = {
            "dice": -math.inf, "step": 0, "state": None, "metrics": None,
        }  # fmt: skip
        self.bad_steps = 0
        self.good: dict[str, torch.Tensor] | None = None  # weights of the last finite loss

    def _resume_optimizer(self) -> int:
        """Load the resumed AdamW moments and GradScaler; the warm-up length goes on."""
        plan, resumed = self.plan, self.plan.resumed
        load_optimizer(self.optimizer, resumed["optimizer"], self.params)
        for group in self.optimizer.param_groups:  # the schedule's base rate: `lr`
            group["lr"] = group["initial_lr"] = plan.lr
            group["weight_decay"] = plan.weight_decay
        if self.scaler.is_enabled() and isinstance(resumed.get("grad_scaler"), dict):
            self.scaler.load_state_dict(resumed["grad_scaler"])
        return max(1, int(resumed["warmup"]))

    def training_state(self, step: int) -> dict[str, Any]:
        """What ``resume=True`` needs to continue after ``step`` (copied to the CPU)."""
        plan = self.plan
        return snapshot(
            step, total=plan.total, warmup=self.warmup, lr=plan.lr,
            weight_decay=plan.weight_decay, seed=plan.settings.seed, rng_state=self.rng_state(),
            optimizer=self.optimizer, scaler=self.scaler,
        )  # fmt: skip

    def rng_state(self) -> dict:
        """The sampling RNG's state after the last batch trained on (not the prefetched ones)."""
        if self.prefetch is None:  # no batch drawn yet: the thread never touched the RNG
            return self.plan.rng.bit_generator.state
        return self.prefetch.rng_state

    def close(self) -> None:
        """Stop the patch sampling thread (idempotent)."""
        if self.prefetch is not None:
            self.prefetch.close()

    def step(self, step: int) -> dict[str, Any]:
        """One optimizer step (and a validation when due); returns the progress info."""
        plan, dev = self.plan, self.plan.device
        if self.prefetch is None:
            self.prefetch = BatchPrefetcher(self.sampler, plan.settings.batch_size)
        x_np, y_np = self.prefetch.next()
        x = torch.from_numpy(x_np).to(dev, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(y_np).to(dev, non_blocking=True)
        dtype = plan.autocast_dtype
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            outs = head_outputs(plan.net, x)
        loss = multi_head_loss(outs, y, plan.net.activation, **plan.loss_options)
        self.optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if math.isfinite(loss_value):
            self.bad_steps = 0
            self._keep_good()
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, CLIP_NORM)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.bad_steps += 1
        lr_now = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        elapsed = time.perf_counter() - self.t0
        for key, value in (
            ("step", step),
            ("loss", loss_value),
            ("lr", lr_now),
            ("seconds", elapsed),
        ):
            self.history[key].append(value)
        if not math.isfinite(loss_value):
            if not finite_weights(plan.net):
                raise self.failure(step, f"the loss is {loss_value} at step {step} of {plan.total} "
                                         f"(the weights are not finite)")  # fmt: skip
            if self.bad_steps >= MAX_BAD_STEPS:
                raise self.failure(step, f"the loss is {loss_value} at step {step} of {plan.total} "
                                         f"({MAX_BAD_STEPS} steps in a row)")  # fmt: skip
        info: dict[str, Any] = {"loss": loss_value, "lr": lr_now, "seconds": elapsed}
        if plan.val_slices and (step % plan.val_every == 0 or step == plan.total):
            info.update(self.validate(step))
        return info

    def validate(self, step: int) -> dict[str, float]:
        """Validate after ``step``, keep the weights if they are the best; the progress info."""
        plan = self.plan
        if not finite_weights(plan.net):
            raise self.failure(
                step, f"the weights are not finite after step {step} of {plan.total}"
            )
        try:
            metrics = validation_metrics(plan.net, plan.val_slices, plan.device, self.val_precision)
        except FloatingPointError:  # non-finite logits (finite but huge weights)
            metrics = {"loss": math.nan}
        if not math.isfinite(metrics["loss"]):
            raise self.failure(step, f"the outputs are not finite at step {step} of {plan.total} "
                                     f"(validation)")  # fmt: skip
        self.history["val_step"].append(step)
        for key in ("loss", "dice", "iou", "dice_per_class", "iou_per_class", "instance_f1"):
            self.history[f"val_{key}"].append(metrics[key])
        score = metrics["dice"] if math.isfinite(metrics["dice"]) else -math.inf
        best = self.best
        if score > best["dice"] or best["state"] is None:
            best.update(
                dice=score,
                step=step,
                metrics=metrics,
                state={k: v.detach().clone() for k, v in plan.net.state_dict().items()},
            )
        info = {
            "val_loss": metrics["loss"], "val_dice": metrics["dice"], "val_iou": metrics["iou"],
            "best_val_dice": best["dice"], "val_scope": metrics["scope"],
        }  # fmt: skip
        if math.isfinite(metrics["instance_f1"]):
            info["val_instance_f1"] = metrics["instance_f1"]
        return info

    def _keep_good(self) -> None:
        """Copy the weights that gave a finite loss: the last good model, should a later one not."""
        state = self.plan.net.state_dict()
        if self.good is None:
            self.good = {key: value.detach().clone() for key, value in state.items()}
            return
        for key, value in state.items():
            self.good[key].copy_(value)

    def failure(self, step: int, what: str) -> TrainingFailed:
        """The `TrainingFailed` of ``step``, carrying the last good model (see its docstring)."""
        plan = self.plan
        model = None
        if self.best["state"] is not None or self.good is not None:
            model = self.finish(step - plan.start, failed=True)
        hint = " or use precision='float32'" if plan.autocast_dtype is not None else ""
        kept = ("err.model holds the last good model" if model is not None
                else "no step had a finite loss (err.model is None)")  # fmt: skip
        return TrainingFailed(
            f"training stopped: {what}; lower `lr` (now {plan.lr:g}){hint}. {kept}",
            model=model, history=self.history, step=step,
        )  # fmt: skip

    def finish(self, done: int, *, failed: bool = False) -> SegmentationNetwork:
        """The result after ``done`` steps of this call: the best weights (else the last ones),
        metadata and the training state of the last step (``failed``: the last good weights,
        no training state). TrainingFailed when the last weights are not finite.
        """
        self.close()  # no more batches: the sampling thread stops before the last validations
        plan, best, net = self.plan, self.best, self.plan.net
        last = plan.start + done
        net.to(memory_format=torch.contiguous_format)  # the result is an ordinary module
        if failed:
            state = None
            net.load_state_dict(best["state"] if best["state"] is not None else self.good)
        elif not finite_weights(net):
            raise self.failure(
                last, f"the weights are not finite after step {last} of {plan.total}"
            )
        else:
            state = self.training_state(last)  # resume goes on from the last step
            state["finished"] = last >= plan.total
            if best["state"] is not None and best["step"] != last:
                state["weights"] = cpu_copy(net.state_dict())  # the last step's, to resume from
                net.load_state_dict(best["state"])
        net.training_state = state
        net.eval()
        decoding = self._choose_decoding(net) if not failed else None
        head_scores = None
        if isinstance(net, NestedUNet) and net.deep_supervision and plan.val_slices:
            fast, head_scores = choose_fast_head(
                net, plan.val_slices, plan.device, self.val_precision,
                plan.settings.fast_head_tolerance,
            )
            net.meta["fast_head"] = int(fast)
        net.to("cpu")
        net.meta["provenance"] = provenance(
            self.record(),
            done=done,
            best_step=best["step"] if best["state"] is not None else None,
            best_metrics=best["metrics"],
            head_scores=head_scores,
            decoding=decoding,
            seconds=time.perf_counter() - self.t0,
        )
        return net

    def _choose_decoding(self, net: SegmentationNetwork) -> dict[str, Any] | None:
        """An instance run's decoding thresholds, chosen on its validation slices
        (`decoding_choice.choose_on_validation`); what provenance records (None: not asked)."""
        plan = self.plan
        if not (plan.settings.instances and plan.settings.tune_decoding):
            return None
        return choose_on_validation(
            net, plan.val_slices,
            lambda s: slice_probabilities(net, s, plan.device, self.val_precision),
        )  # fmt: skip

    def record(self) -> RunRecord:
        """What provenance needs to know about this run."""
        plan = self.plan
        return RunRecord(
            settings=plan.settings, lr=plan.lr, device=str(plan.device), precision=self.precision,
            label_shape=plan.label_shape, data=plan.data, train_slices=plan.train_slices,
            val_slices=plan.val_slices, start=plan.start, resumed=plan.resumed is not None,
            previous=plan.previous,
        )  # fmt: skip
