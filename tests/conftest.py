import os

# LiteLLM fetches its model cost map from the network at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Fixtures for timing tests (also for users: see the README): play_call, anyio_backend.
pytest_plugins = ["lab.pytest_plugin"]
