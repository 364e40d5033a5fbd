"""Reaching hosts: SSH connections (the only module that imports paramiko) and parallelism."""
