"""Re-seeding a host's data volumes from a healthy replicated peer, verified end to end."""
