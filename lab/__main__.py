"""The offline call lab's command line: `python -m lab simulate` (`lab/simulate.py`) and
`python -m lab chain` (`lab/chain.py`)."""

from __future__ import annotations

import os
import sys

# LiteLLM fetches its model cost map from the network at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["simulate"]:
        from lab.simulate import main as simulate

        return simulate(args[1:])
    if args[:1] == ["chain"]:
        from lab.chain import main as chain

        return chain(args[1:])
    print("usage: python -m lab simulate [options] | python -m lab chain [options]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
