"""Disaster-recovery drills: scenarios, the runner, the floor monitor, reports."""
