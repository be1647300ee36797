"""Named transfer destinations: the names the agent may pass to `call_transfer`.

The numbers stay in VoxEngine (ApplicationStorage `TRANSFER_DESTINATIONS`, docs/control-contract.md):
the agent knows only names, so no prompt can make it dial a number of its choosing.
`VOX_TRANSFER_DESTINATIONS` lists them, comma-separated, each `name` or `name=short description`
(the description is shown to the LLM to choose by): `sales=New orders and pricing,billing`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME = re.compile(r"[a-z0-9_-]{1,64}")  # the contract's `destination` (docs/control-contract.md)
MAX_DESCRIPTION_CHARS = 200  # a hint for the LLM, not a document


class InvalidDestinations(ValueError):
    """`VOX_TRANSFER_DESTINATIONS` cannot be used (the message says why, without the whole value)."""


@dataclass(frozen=True)
class Destination:
    name: str
    description: str = ""


def parse_destinations(raw: str) -> tuple[Destination, ...]:
    """The destinations in `raw`, in order; empty when it is blank."""
    destinations: list[Destination] = []
    for item in raw.split(","):
        spec = item.strip()
        if not spec:
            continue
        name, _, description = spec.partition("=")
        name, description = name.strip(), " ".join(description.split())
        if not NAME.fullmatch(name):
            raise InvalidDestinations(f"{name[:70]!r} is not a destination name (1-64 of a-z 0-9 _ -)")
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidDestinations(f"the description of {name} is over {MAX_DESCRIPTION_CHARS} characters")
        if any(d.name == name for d in destinations):
            raise InvalidDestinations(f"{name} is listed twice")
        destinations.append(Destination(name, description))
    return tuple(destinations)
