"""``hydra.utils.instantiate`` with tagseg's error policy: a config mistake is one clear line."""

from __future__ import annotations

from typing import Any

import hydra.utils
from hydra.errors import InstantiationException

from tagseg.errors import ConfigError, TagsegError


def instantiate(cfg: Any, what: str, **kwargs: Any) -> Any:
    """Build the object a config node describes (``_target_``), surfacing tagseg errors as themselves.

    Args:
        cfg: the config node (with ``_target_``).
        what: the config key, named in errors that Hydra raises itself.
        **kwargs: extra constructor arguments.

    Raises:
        TagsegError: raised by the constructor, unchanged (not wrapped by Hydra).
        ConfigError: the target cannot be imported or called (names ``what``).
    """
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, TagsegError):
            cause = cause.__cause__
        if isinstance(cause, TagsegError):
            raise cause from None
        raise ConfigError(f"{what}: cannot instantiate: {exc}") from exc


__all__ = ["instantiate"]
