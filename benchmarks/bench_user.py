"""Benchmark sections that show what a user pays (issue 13, item 4), run by ``run.py``:

(f) the engine against the bare eager float32 NCHW forward of the same model on the
    *unpadded* slices (the padded comparison as a second row), and the demo job
    (``unet-stack demo``: the bundled model on the held-out sample) with today's settings
    against a float32 NCHW baseline (``border="reach"`` where `segment` has that option);
(g) one `train` step against a bare eager float32 PyTorch loop of the same network, loss
    and optimizer at the same batch and patch size;
(h) a UNet++'s fast head against its accurate mode.

Each section takes the run's ``cfg`` and ``h`` (the ``bench_common`` module: its helpers) and
returns a dict; `summary_rows` gives each row's measured ratio, threshold and PASS / NO.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
from pathlib import Path

import numpy as np
import torch

import napari_unet_stack as nus
from napari_unet_stack import devices, tiling

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by path (tests), not by run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_demo

#: done-when thresholds of issue 13
TARGET_UNPADDED = 0.5  # engine / bare eager float32 forward on the unpadded slices, at most
TARGET_DEMO = 5.0  # demo throughput / float32 NCHW baseline, at least
TARGET_TRAIN = 0.8  # train step / bare eager float32 loop, at most
TARGET_HEAD = 1.0  # UNet++ fast head / accurate, below


def verdict(ok: bool) -> str:
    return "PASS" if ok else "NO"


def segment_accepts(name: str) -> bool:
    return name in inspect.signature(nus.segment).parameters


@contextlib.contextmanager
def nchw_engine():
    """The engine as before channels-last: every module that took `channels_last_for` from
    `napari_unet_stack.devices` sees a version that says no (restored on exit)."""
    original = devices.channels_last_for
    patched = []
    for name, module in list(sys.modules.items()):
        ours = name.startswith("napari_unet_stack.") and module is not devices
        if ours and getattr(module, "channels_last_for", None) is original:
            patched.append(module)
    try:
        for module in patched:
            module.channels_last_for = lambda device: False
        yield
    finally:
        for module in patched:
            module.channels_last_for = original


# ----------------------------------------------------------------------------- (f) user
def trained_unet(h, base: int, steps: int):
    """A base-``base`` UNet trained briefly on the training sample: what a user runs.

    A random network is no model: ``precision="auto"`` probes whether bf16 keeps a
    model's labels, and random weights (near-even probabilities) fail that probe where
    trained ones pass it, so the row would time float32 where users get bf16.
    """
    from napari_unet_stack.samples import load_sample

    model = h.make_unet(base, 4, seed=11)
    if steps:
        sample = load_sample("nuclei_train")
        nus.train(sample.image, sample.labels, model, steps=steps, batch_size=4, patch_size=128,
                  val_fraction=0, seed=0)
    return model.eval()


def _precision_used(x, model) -> str:
    info: dict = {}
    nus.predict(x[:1], model, normalization=None, device="cpu", info=info)
    return f"{info.get('precision')} ({info.get('precision_reason')})"


def _unpadded(cfg, h) -> dict:
    z, size, base = cfg.f_shape[0], cfg.f_shape[1], cfg.f_base
    model = trained_unet(h, base, cfg.f_train_steps)
    x = h.normalized(h.nuclei((z, size, size), seed=12))
    plan = tiling.plan_axis(size, core=None, halo=model.halo, multiple=model.size_multiple)
    pads = ((0, 0), (plan.pad_before, plan.pad_after), (plan.pad_before, plan.pad_after))
    flat = torch.from_numpy(x[:, None].copy())
    canvas = torch.from_numpy(np.pad(x, pads, mode="reflect")[:, None].copy())

    def bare(t):
        with torch.inference_mode():
            return torch.softmax(model(t), dim=1)

    fns = {
        "bare unpadded": lambda: bare(flat),
        "bare padded": lambda: bare(canvas),
        "predict": lambda: nus.predict(x, model, normalization=None, device="cpu"),
    }
    for fn in fns.values():  # warm-up: oneDNN primitives, the engine's inference copy
        fn()
    times, _ = h.interleaved(fns, cfg.repeats, keep_first=False)
    return {
        "shape": (z, size, size), "model": f"UNet(base {base}, depth 4), trained {cfg.f_train_steps} steps",
        "precision": _precision_used(x, model),
        "times": {k: h.median(times[k]) for k in fns},
        "unpadded": h.paired_ratio(times["predict"], times["bare unpadded"]),
        "padded": h.paired_ratio(times["predict"], times["bare padded"]),
    }  # fmt: skip


def _demo(cfg, h) -> dict:
    """Today's demo job (`demo_job`, what `unet-stack demo` runs and times) against the same
    job with float32, border 'reach' and the engine held to NCHW, in this process."""
    from napari_unet_stack.checkpoints import load_model
    from napari_unet_stack.cli.demo import demo_job
    from napari_unet_stack.samples import load_sample

    model = load_model("nuclei-unet")
    image = load_sample("nuclei_stack").image[: cfg.f_demo_slices]
    reach = segment_accepts("border")
    baseline_options = {"precision": "float32", **({"border": "reach"} if reach else {})}

    auto_batch = []

    def today():
        job = demo_job(image, model, device="cpu")
        auto_batch.append(job.info["batch_size"])
        return job.seconds

    def baseline():
        with nchw_engine():
            return demo_job(image, model, device="cpu", **baseline_options).seconds

    def batch_1():  # information for the CPU batch rule (`cpu_batch`): what its batching gains here
        return demo_job(image, model, device="cpu", batch_size=1).seconds

    fns = {"demo today": today, "baseline": baseline, "batch 1": batch_1}
    for fn in fns.values():
        fn()
    times = bench_demo.alternate(fns, cfg.repeats)
    mpix = image.size / 1e6
    return {
        "shape": tuple(image.shape), "reach": reach, "baseline_options": baseline_options,
        "mpix": {k: mpix / h.median(times[k]) for k in fns},
        "speedup": h.paired_ratio(times["baseline"], times["demo today"]),
        "auto_batch": auto_batch[-1],
        "batch_rule": h.paired_ratio(times["demo today"], times["batch 1"]),
    }  # fmt: skip


def section_user(cfg, h) -> dict:
    print(f"(f) what a user pays: engine vs bare unpadded forward {cfg.f_shape}, demo job", flush=True)
    res = {"unpadded": _unpadded(cfg, h), "demo": _demo(cfg, h)}
    print(f"(f) demo job today vs the demo at {bench_demo.OLD_DEMO_COMMIT[:7]} (child processes)", flush=True)
    res["old"] = bench_demo.old_demo(cfg.f_demo_slices, cfg.f_old_repeats)
    if "skipped" in res["old"]:
        print(f"    skipped: {res['old']['skipped']}", flush=True)
    return res


# ----------------------------------------------------------------------------- (g) train
def _bare_loop(image, labels, steps: int, batch: int, patch: int, seed: int):
    """A bare eager float32 NCHW loop: the trainer's network, loss and optimizer on fixed
    random crops of the normalized sample (no augmentation, no validation, no clipping)."""
    from napari_unet_stack.normalization import DEFAULT_NORMALIZATION, normalize
    from napari_unet_stack.training import default_model, segmentation_loss
    from napari_unet_stack.training.settings import DEFAULT_LR, DEFAULT_WEIGHT_DECAY

    torch.manual_seed(seed)
    net = default_model(1, 2).train()
    opt = torch.optim.AdamW(net.parameters(), lr=DEFAULT_LR, weight_decay=DEFAULT_WEIGHT_DECAY)
    rng = np.random.default_rng(seed)
    n, hh, ww = image.shape
    idx = [(rng.integers(n), rng.integers(hh - patch + 1), rng.integers(ww - patch + 1)) for _ in range(batch)]
    x = torch.from_numpy(np.stack([
        normalize(image[k, r : r + patch, c : c + patch][None].astype(np.float32), DEFAULT_NORMALIZATION)
        for k, r, c in idx]))  # fmt: skip
    y = torch.from_numpy(np.stack([labels[k, r : r + patch, c : c + patch] for k, r, c in idx]).astype(np.int64))
    stamps = []
    for _ in range(steps):
        loss = segmentation_loss(net(x), y, "softmax")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())
        stamps.append(time.perf_counter())
    return stamps


def _per_step(stamps) -> float:
    """Mean seconds per step after the first two (warm-up)."""
    return (stamps[-1] - stamps[1]) / (len(stamps) - 2)


def section_training(cfg, h) -> dict:
    from napari_unet_stack.samples import load_sample
    from napari_unet_stack.training import train

    steps, batch, patch = cfg.g_steps, cfg.g_batch, cfg.g_patch
    print(f"(g) training: train step vs bare eager float32 loop, batch {batch}, patch {patch}", flush=True)
    sample = load_sample("nuclei_train")
    per: dict[str, list[float]] = {"train step": [], "bare loop": []}
    meta: dict = {}

    def trainer():
        t0 = time.perf_counter()
        model, history = train(sample.image, sample.labels, steps=steps, batch_size=batch,
                               patch_size=patch, val_every=steps, device="cpu", seed=0)  # fmt: skip
        per["train step"].append(_per_step([t0 + s for s in history["seconds"]]))
        meta["precision"] = model.meta["provenance"]["precision"]

    def bare():
        per["bare loop"].append(_per_step(_bare_loop(sample.image, sample.labels, steps, batch, patch, 0)))

    h.interleaved({"train step": trainer, "bare loop": bare}, cfg.repeats, keep_first=False)
    return {
        "batch": batch, "patch": patch, "steps": steps, "precision": meta.get("precision"),
        "times": {k: h.median(v) for k, v in per.items()},
        "ratio": h.paired_ratio(per["train step"], per["bare loop"]),
    }  # fmt: skip


# ----------------------------------------------------------------------------- (h) heads
def section_heads(cfg, h) -> dict:
    from napari_unet_stack.checkpoints import load_model

    z, size = cfg.h_shape
    print(f"(h) UNet++ fast head vs accurate: {z} x {size} x {size}", flush=True)
    model = load_model("nuclei-unetpp")
    image = h.nuclei((z, size, size), seed=13)
    fast_head = model.meta.get("fast_head")

    def run(head):
        def go():
            model.head = head
            return nus.segment(image, model, device="cpu")

        return go

    fns = {"fast": run("fast"), "accurate": run("accurate")}
    for fn in fns.values():
        fn()
    times, _ = h.interleaved(fns, cfg.repeats, keep_first=False)
    model.head = "fast"
    return {"shape": (z, size, size), "fast_head": fast_head,
            "times": {k: h.median(times[k]) for k in fns},
            "ratio": h.paired_ratio(times["fast"], times["accurate"])}  # fmt: skip


# ----------------------------------------------------------------------------- report
def summary_rows(res: dict, fmt_ratio) -> list[tuple[str, str, str, str]]:
    rows = []
    f = res.get("f")
    if f:
        u, d = f["unpadded"], f["demo"]
        rows.append((f"(f) predict (defaults: {u.get('precision', '?').split()[0]}) / bare eager float32 forward, unpadded slices",
                     fmt_ratio(*u["unpadded"]), f"<= {TARGET_UNPADDED:.2f}x",
                     verdict(u["unpadded"][0] <= TARGET_UNPADDED)))
        rows.append(("(f) same / bare forward on the padded slices", fmt_ratio(*u["padded"]),
                     "(information)", "-"))
        rows += _demo_rows(d, f.get("old") or {"skipped": "not measured"}, fmt_ratio)
    g = res.get("g")
    if g:
        rows.append(((f"(g) train step ({g['precision']}) / bare eager float32 loop, batch "
                      f"{g['batch']}, patch {g['patch']}"), fmt_ratio(*g["ratio"]),
                     f"<= {TARGET_TRAIN:.2f}x", verdict(g["ratio"][0] <= TARGET_TRAIN)))
    hh = res.get("h")
    if hh:
        rows.append((f"(h) UNet++ fast head ({hh['fast_head']}) / accurate, segment",
                     fmt_ratio(*hh["ratio"]), f"< {TARGET_HEAD:.2f}x", verdict(hh["ratio"][0] < TARGET_HEAD)))
    return rows


def _demo_rows(d: dict, old: dict, fmt_ratio) -> list[tuple[str, str, str, str]]:
    """The verdict on the old-commit row (the issue's "today's"); on the in-process
    baseline only where the old commit could not be checked out."""
    base = "float32 NCHW" + (", border='reach'" if d["reach"] else " (segment has no `border` yet)")
    ok = d["speedup"][0] >= TARGET_DEMO
    skipped = "skipped" in old
    rows = []
    if skipped:
        rows.append((f"(f) demo job / the demo at the commit issue 13 was filed: skipped ({old['skipped']})",
                     "-", f">= {TARGET_DEMO:.1f}x", "-"))
    else:
        rows.append(((f"(f) demo job / the demo at the commit issue 13 was filed ({old['commit'][:7]}, "
                     "child processes, MPix/s of each one's own sample)"),
                     (f"{fmt_ratio(*old['speedup'])}; {old['mpix']['demo today']:.2f} vs "
                      f"{old['mpix']['old demo']:.2f} MPix/s"), f">= {TARGET_DEMO:.1f}x",
                     verdict(old["speedup"][0] >= TARGET_DEMO)))
    rows.append((f"(f) demo job / the same job in-process with {base}" + (" (the verdict: no old commit)"
                                                                         if skipped else ""),
                 (f"{fmt_ratio(*d['speedup'])}; {d['mpix']['demo today']:.2f} vs "
                  f"{d['mpix']['baseline']:.2f} MPix/s"),
                 f">= {TARGET_DEMO:.1f}x" if skipped else "(information)", verdict(ok) if skipped else "-"))
    if "batch_rule" in d:
        rows.append(((f"(f) demo job at its default batch ({d['auto_batch']} windows per forward on the CPU) / "
                      "batch_size=1"), fmt_ratio(*d["batch_rule"]), "(information)", "-"))
    return rows


def _demo_markdown(d: dict, old: dict, fmt_ratio) -> list[str]:
    """The two demo rows explained: what each side runs and which one carries the verdict."""
    shape = " x ".join(map(str, d["shape"]))
    out = ["", "### The demo job", "",
           ("`unet-stack demo` (`make demo`) runs the network once: `demo_job` calls `predict` on "
            "the held-out sample, turns the probabilities into the semantic labels by the one rule "
            "(`LabelRule`, equal bit for bit to `segment`) and decodes the model's own instances "
            "from the same probabilities (`decode_probabilities`, equal to `segment(instances=True)`). "
            "The MPix/s it prints, and both rows below, cover the network pass and the labels; the "
            "instance decoding is timed on its own."), ""]
    if "skipped" in old:
        out += [(f"*Against the demo at the commit issue 13 was filed ({old['commit'][:7]}):* skipped, "
                f"{old['skipped']}; the in-process row below carries the verdict instead."), ""]
    else:
        m_old, m_new = old["meta"]["old demo"], old["meta"]["demo today"]
        out += [(f"*Against the demo at the commit issue 13 was filed* (the issue's \"today's\"; "
                 f"commit {old['commit'][:7]}, the parent of the first issue-13 commit): that commit is "
                 "checked out into a temporary `git worktree` (removed afterwards) and its own "
                 "`segment(load_sample('nuclei_stack').image, load_model('nuclei-unet'), device='cpu')`, "
                 "what its `unet-stack demo` timed, runs in a child process with the worktree's `src` "
                 "first on `PYTHONPATH`; today's demo job runs in a second child process, set up as the "
                 "`unet-stack` command sets itself up (`keep_freed_memory`: "
                 f"{m_new.get('keep_freed_memory')}). Each child warms up once, then the two are timed "
                 f"alternately (A B, B A, ...), {old['repeats']} repeats, medians and the median of the "
                 "paired ratios. Each side is measured in MPix/s of *its own* sample: the old commit "
                 "shipped another sample and another model, of the same shape "
                 f"(old {' x '.join(map(str, m_old['shape']))} {m_old['dtype']}, {m_old['model']}; today "
                 f"{' x '.join(map(str, m_new['shape']))} {m_new['dtype']}, {m_new['model']}): "
                 f"{old['mpix']['demo today']:.3f} vs {old['mpix']['old demo']:.3f} MPix/s, speed-up "
                 f"**{fmt_ratio(*old['speedup'])}** (target >= {TARGET_DEMO:.1f}x; this row carries the "
                 f"verdict). Today's whole job, instances included: {old['job_mpix']:.3f} MPix/s."), ""]
    out += [(f"*In-process baseline* (the engine's settings alone, same sample and model): "
             f"`demo_job(nuclei_stack {shape}, nuclei-unet, device='cpu')` against the same job with "
             f"{d['baseline_options']} and the engine held to NCHW (the float32 NCHW baseline"
             + ("" if d["reach"] else "; `segment` has no `border` option yet, so no border='reach'")
             + f"), alternately in this process: {d['mpix']['demo today']:.3f} vs "
             f"{d['mpix']['baseline']:.3f} MPix/s, speed-up **{fmt_ratio(*d['speedup'])}** "
             + ("(the verdict, as the old commit was not available)." if "skipped" in old else
                "(information: the baseline shares today's other fixes, e.g. the labels step and the "
                "single network pass, so it understates the gain over the old commit)."))]
    if "batch_rule" in d:
        out += ["", (f"The job at its default batch size ({d['auto_batch']} windows per forward: `batch_size='auto'` "
                     "on the CPU batches as many windows as fit its activation budget, see "
                     f"`benchmarks/cpu_batch_rule.md`) took **{fmt_ratio(*d['batch_rule'])}** of the time of the "
                     f"same job with `batch_size=1` ({d['mpix']['batch 1']:.3f} MPix/s): below 1 means the "
                     "batching pays here.")]
    return out


def markdown(res: dict, fmt_ratio) -> list[str]:
    out: list[str] = []
    f = res.get("f")
    if f:
        u, d = f["unpadded"], f["demo"]
        z, hgt, w = u["shape"]
        out += ["", "## (f) What a user pays: unpadded forward and the demo job", "",
                (f"{u['model']} on nuclei_train (He-initialized, then `train`; precision 'auto' chose "
                 f"{u.get('precision', '?')}), normalized synthetic stack {z} x {hgt} x {w}. "
                 "`predict(x, model, normalization=None, device='cpu')` with every other option at its "
                 "default, against `torch.softmax(model(x), 1)` in eager float32 NCHW under "
                 "`torch.inference_mode()`, all slices in one batch, on the slices as they are "
                 "(*unpadded*: what a user would write) and on the slices mirror-padded by the halo "
                 "(the engine's canvas, as in (a))."), "",
                "| | median s |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in u["times"].items()]
        out += ["", (f"predict / bare unpadded: **{fmt_ratio(*u['unpadded'])}** (target <= "
                     f"{TARGET_UNPADDED:.2f}x); predict / bare padded: {fmt_ratio(*u['padded'])}.")]
        out += _demo_markdown(d, f.get("old") or {"skipped": "not measured"}, fmt_ratio)
    g = res.get("g")
    if g:
        out += ["", "## (g) Training step", "",
                (f"`train(nuclei_train, steps={g['steps']}, batch_size={g['batch']}, patch_size={g['patch']}, "
                 f"device='cpu')` (default UNet base 16, precision 'auto' = {g['precision']}, augmentation "
                 "on, patches drawn by the sampling thread; validation only after the last step) against a "
                 "bare eager float32 NCHW loop of the same network, loss (`segmentation_loss`) and AdamW "
                 "on fixed crops (no augmentation, clipping, schedule or validation). Seconds per step "
                 "after two warm-up steps, from the trainer's own history clock."), "",
                "| | median s / step |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in g["times"].items()]
        out += ["", f"train step / bare loop: **{fmt_ratio(*g['ratio'])}** (target <= {TARGET_TRAIN:.2f}x)."]
    hh = res.get("h")
    if hh:
        z, hgt, w = hh["shape"]
        out += ["", "## (h) UNet++ fast head", "",
                (f"Bundled `nuclei-unetpp`, `segment` of a synthetic {z} x {hgt} x {w} uint16 stack on the "
                 f"CPU with `model.head = 'fast'` (head {hh['fast_head']}) and `'accurate'` (all heads "
                 f"averaged): {hh['times']['fast']:.2f} vs {hh['times']['accurate']:.2f} s, ratio "
                 f"**{fmt_ratio(*hh['ratio'])}**.")]
    return out
