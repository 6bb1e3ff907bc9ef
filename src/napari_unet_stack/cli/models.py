"""``unet-stack models``: the bundled models, one line each."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import checkpoints

    names = checkpoints.list_models()
    if not names:
        print("no bundled models are installed; pass a checkpoint file to --model")
        return 0
    width = max(map(len, names))
    for name in names:
        model = checkpoints.load_model(name)
        print(f"{name:<{width}}  {model.describe()}; classes: {', '.join(model.class_names)}")
    return 0
