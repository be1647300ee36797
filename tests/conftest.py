import os

from hypothesis import settings

from tests.tiers import FAST, SPEEDUP, TIER, examples

# LiteLLM fetches its model cost map from the network at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Fixtures for timing tests (also for users: see the README): play_call, anyio_backend.
pytest_plugins = ["lab.pytest_plugin"]

# Hypothesis's defaults for a test that sets no count of its own; one that does scales it with
# tests.tiers.examples. Selected by VOX_TEST_TIER (tests/tiers.py), which ./dev sets.
settings.register_profile("all")
settings.register_profile("fast", max_examples=examples(settings.default.max_examples))
settings.load_profile(TIER)


def pytest_report_header() -> str:
    if FAST:
        return f"test tier: fast (./dev test): speech x{SPEEDUP:g} where order is asserted, fewer examples"
    return "test tier: all (./dev test --all): real pace, every example"
