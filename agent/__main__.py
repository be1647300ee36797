"""`python -m agent simulate` (offline call lab) and `python -m agent serve` (the server)."""

from __future__ import annotations

import os
import sys

# LiteLLM fetches its model cost map from the network at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "simulate"
    if command == "simulate":
        from agent.lab.simulate import main as simulate

        return simulate(args[1:])
    if command == "serve":
        from agent.server import create_app, serve

        serve(create_app())
        return 0
    print("usage: python -m agent [simulate|serve] [options]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
