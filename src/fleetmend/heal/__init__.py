"""Heal: repair broken hosts rung by rung, once or as a controller loop."""
