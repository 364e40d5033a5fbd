"""fleetmend: keep a fleet cast from its standard images, and bring lost servers back."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fleetmend")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
