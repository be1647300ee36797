"""Entry point: `uvicorn main:app` serves the agent; `python main.py` runs it; Cartesia's deploy loads it."""

from agent.server import create_app, serve

voice_app = create_app()
app = voice_app.fastapi_app

if __name__ == "__main__":
    serve(voice_app)
