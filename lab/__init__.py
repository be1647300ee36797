"""The offline call lab: a simulated Cartesia harness, a scripted LLM and a VoxEngine emulator
that play whole calls against the real app on loopback. Nothing in `agent/` imports it."""
