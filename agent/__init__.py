"""Cartesia Line agent that drives Voximplant VoxEngine telephony at turn-precise moments."""
