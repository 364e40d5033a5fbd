"""Settings every command shares: where the inputs are, how to print, how loud to be.

Precedence: built-in defaults < environment (FLEETMEND_*) < command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetmend.console import OutputFormat

DEFAULT_IMAGES = Path("images")
DEFAULT_INVENTORY = Path("inventories/lab.yaml")
DEFAULT_STATE_DIR = Path(".fleetmend")


@dataclass
class Settings:
    images: Path = DEFAULT_IMAGES
    inventory: Path = DEFAULT_INVENTORY
    inventory_given: bool = False
    """True when the user named the inventory (flag or env), not the default."""
    state_dir: Path = DEFAULT_STATE_DIR
    """Where fleetmend keeps its state: the lab, and later the journal."""
    format: OutputFormat = OutputFormat.TABLE
    debug: bool = False

    def output(self, override: OutputFormat | None) -> OutputFormat:
        """A command's own --format wins over the global one."""
        return override or self.format
