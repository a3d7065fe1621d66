"""Command line: `python -m minitransformer <command>` (also installed as `minitransformer`)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minitransformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit a small character model to Python source and sample from it")
    demo.add_argument("--steps", type=int, default=3000)
    demo.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        demo_main(steps=args.steps, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
