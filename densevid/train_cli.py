"""The fine-tuning subcommands of `densevid` (train and friends)."""

from __future__ import annotations

from pathlib import Path

from densevid.exits import EXIT_OK


def add_parsers(sub) -> None:
    train = sub.add_parser("train", help="LoRA fine-tune on a mixture folder")
    train.add_argument("--mixture", type=Path, required=True)
    train.add_argument("--model", default=None)
    train.add_argument("--output-dir", type=Path, default=Path("runs/lora"))
    train.add_argument("--max-steps", type=int, default=20)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)


def dispatch(args) -> int | None:
    """Run the subcommand if it is one of ours; None otherwise."""
    if args.cmd == "train":
        return cmd_train(args)
    return None


def cmd_train(args) -> int:
    from finetune.lora import LoraConfig, train_lora
    from model.loader import DEFAULT_MODEL

    cfg = LoraConfig(model=args.model or DEFAULT_MODEL, mixture=str(args.mixture), output_dir=str(args.output_dir),
                     max_steps=args.max_steps, lr=args.lr, seed=args.seed)
    result = train_lora(cfg)
    print(f"adapter: {result['output_dir']}")
    return EXIT_OK
