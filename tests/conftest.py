import os

# LiteLLM fetches its model cost map from the network at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # The agent runs on Line's asyncio server; the lab shares its loop.
    return "asyncio"
