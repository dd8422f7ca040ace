"""The version of flask_observe (one place: the package, setup.cfg and app_info read it)."""

__version__ = "0.1.0"
