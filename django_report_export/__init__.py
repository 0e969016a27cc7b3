"""Asynchronous, resumable data exports for Django, run on RQ workers."""

__version__ = "0.1.0.dev0"
