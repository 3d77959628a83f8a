"""Errors that tagseg reports to the user as one clear line (see :mod:`tagseg.cli`)."""


class TagsegError(Exception):
    """Base class: anything the user can fix (bad input, bad config)."""


class ConfigError(TagsegError, ValueError):
    """A configuration value is invalid; the message names the key and what was expected."""


class StoreError(TagsegError):
    """A slice store is missing, malformed, or lacks a required key; the message names the file."""


class DataError(TagsegError):
    """A raw dataset file is unreadable or inconsistent; the message names the file."""


def reject_unknown_keys(given: object, known: object, where: str) -> None:
    """Raise :class:`ConfigError` when a config mapping holds keys outside ``known``.

    Args:
        given: the keys the user gave (a mapping or any iterable of names).
        known: the accepted keys.
        where: the config path named in the message, e.g. ``"physics"``.

    Raises:
        ConfigError: ``<where>: unknown key(s) [...]; expected some of [...]``.
    """
    unknown = sorted(set(given) - set(known))  # type: ignore[call-overload]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")  # type: ignore[call-overload]


class CheckpointError(ConfigError):
    """A checkpoint is missing, unreadable, unsafe to unpickle or of another model type; the message
    starts with the file (or the config key when no file was found)."""
