"""Rendering: the procedural ARKit head, the offscreen renderer and video writing."""
