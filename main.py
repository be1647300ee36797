"""Entry point: `python main.py` serves the agent (the documented way: drain on SIGTERM, a second
SIGTERM exits at once); `uvicorn main:app` serves it too; Cartesia's deploy loads `app`."""

import os

# LiteLLM fetches its model cost map from the network at import unless told otherwise.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agent.server import create_app_or_exit, serve

voice_app = create_app_or_exit()
app = voice_app.fastapi_app

if __name__ == "__main__":
    serve(voice_app)
