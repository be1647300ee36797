"""Entry point: `python main.py` serves the agent (the documented way: the runtime of
`agent.runtime`, `WEB_CONCURRENCY` workers). `uvicorn main:app` serves the same app: the first
SIGTERM drains calls and a second exits at once either way (`agent.drain`, installed by the app's
lifespan), but uvicorn's CLI has no bound on the flush after the drain (`python main.py` sets one)."""

import os

# LiteLLM fetches its model cost map from the network at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agent.server import create_app_or_exit, serve

voice_app = create_app_or_exit()
app = voice_app.fastapi_app

if __name__ == "__main__":
    serve(voice_app)
