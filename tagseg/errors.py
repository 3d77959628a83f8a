"""Errors that tagseg reports to the user as one clear line (see :mod:`tagseg.cli`)."""


class TagsegError(Exception):
    """Base class: anything the user can fix (bad input, bad config)."""


class ConfigError(TagsegError, ValueError):
    """A configuration value is invalid; the message names the key and what was expected."""


class StoreError(TagsegError):
    """A slice store is missing, malformed, or lacks a required key; the message names the file."""


class DataError(TagsegError):
    """A raw dataset file is unreadable or inconsistent; the message names the file."""
