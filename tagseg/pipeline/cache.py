"""The stage artifact cache: one directory per (stage, hash of the config that determines it).

A stage (prepare a store, train the CycleGAN, translate a store, pretrain, fine-tune, test)
writes everything it produces into ``<cache root>/<kind>/<key>/`` where ``key`` is a hash of
the stage's *determining* config (its own settings plus the keys of the stages it reads). The
directory holds:

``config.yaml``   the determining config (what the key hashes), written first
``outputs.json``  what the stage produced (artifact paths relative to the directory, numbers)
``done``          JSON marker written last, atomically: only a directory with ``done`` is reused

A later run asking for the same stage config finds ``done`` and reuses the outputs (logged as
``reusing``) instead of recomputing; a directory without ``done`` is an interrupted stage: it is
run again in the same directory, so a training stage can resume from its ``last.ckpt``.
``force`` recomputes from an empty directory.

Concurrent jobs (a sweep on ``submitit_local`` or SLURM) asking for the same stage take a file
lock, so one computes and the others wait and reuse. When a job's ranks were created by the
launcher (SLURM ``tasks_per_node = devices``), rank 0 decides (run or reuse) and tells the other
ranks through :class:`RankSync`; *collective* stages (training) run on every rank, the others on
rank 0 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tagseg.errors import ConfigError, StoreError
from tagseg.io.atomic import OutputLock, atomic_write_text

log = logging.getLogger(__name__)

#: bump when the layout of a stage directory changes (old entries are then simply not found)
CACHE_VERSION = 1
DONE = "done"
OUTPUTS = "outputs.json"
CONFIG = "config.yaml"

StageFn = Callable[[Path], Mapping[str, Any]]


def config_key(kind: str, config: Mapping[str, Any], length: int = 12) -> str:
    """Hash a stage's determining config into a short, stable key.

    Args:
        kind: the stage kind (``prepare``, ``pretrain``, ...); part of the hash.
        config: plain (resolved) mapping; keys are sorted, so order does not matter.
        length: number of hex characters kept.

    Returns:
        The first ``length`` hex characters of a SHA-256 over the canonical JSON.
    """
    blob = json.dumps(
        {"kind": kind, "version": CACHE_VERSION, "config": config}, sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_text(path, text)  # a temporary name of this writer's own, then rename


def _relativise(value: Any, base: Path) -> Any:
    """Paths under ``base`` become ``{"path": <relative>}`` so a cache folder can be moved."""
    if isinstance(value, Path):
        try:
            return {"path": str(value.resolve().relative_to(base.resolve()))}
        except ValueError:
            return {"path": str(value.resolve())}
    if isinstance(value, Mapping):
        return {str(k): _relativise(v, base) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_relativise(v, base) for v in value]
    return value


def _absolutise(value: Any, base: Path) -> Any:
    if isinstance(value, dict) and set(value) == {"path"}:
        return base / value["path"]
    if isinstance(value, dict):
        return {k: _absolutise(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolutise(v, base) for v in value]
    return value


@dataclass
class StageResult:
    """One stage's artifacts.

    Attributes:
        kind: the stage kind (``pretrain``, ...).
        key: the hash of its determining config.
        dir: its cache directory.
        outputs: what it produced; paths are absolute :class:`~pathlib.Path` objects.
        reused: ``True`` when found complete in the cache (nothing recomputed).
        seconds: wall time of the computation (the original one when reused).
    """

    kind: str
    key: str
    dir: Path
    outputs: dict[str, Any]
    reused: bool
    seconds: float


class RankSync:
    """Tell the ranks of one job what rank 0 decided, through small files in the job's folder.

    Only needed when the launcher created the ranks (each runs the whole job); with one process
    per job (``ddp_spawn`` or no DDP) ``world_size`` is 1 and nothing is written.

    Args:
        folder: a folder shared by the ranks of this job (the Hydra job output dir).
        rank: this process's global rank.
        world_size: number of ranks.
        poll_s: seconds between checks while waiting.
        timeout_s: give up waiting after this long (``None``: wait forever).
    """

    def __init__(
        self,
        folder: str | Path,
        rank: int = 0,
        world_size: int = 1,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> None:
        self.folder = Path(folder) / ".rank_sync"
        self.rank, self.world_size = int(rank), int(world_size)
        self.poll_s, self.timeout_s = poll_s, timeout_s

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def announce(self, name: str, value: str) -> None:
        """Rank 0 publishes ``value`` under ``name`` (no-op with one rank)."""
        if self.world_size > 1 and self.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.folder / name, value)

    def wait_for(self, name: str) -> str:
        """Block until rank 0 has announced ``name``; return its value."""
        return _wait(
            lambda: (self.folder / name).read_text() if (self.folder / name).exists() else None,
            f"rank 0's decision '{name}' in {self.folder}",
            self.poll_s,
            self.timeout_s,
        )


def _wait(probe: Callable[[], Any], what: str, poll_s: float, timeout_s: float | None) -> Any:
    start = time.monotonic()
    while (value := probe()) is None:
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)
    return value


class StageCache:
    """Run a stage once per determining config; reuse, resume or recompute it.

    Args:
        root: the cache folder (``paths.cache_dir`` by default).
        force: ``True`` recomputes every stage it is asked for; a list of stage kinds
            (e.g. ``["translate", "pretrain"]``) recomputes only those.
        sync: how the ranks of a launcher-created DDP job agree (default: one rank).

    Example::

        cache = StageCache("cache")
        res = cache.run("translate", {"method": "physics", "input": prep.key},
                        lambda out: {"store": physics_translate(src, out / "store.h5")})
        res.outputs["store"]      # Path to the translated store (computed once)
    """

    def __init__(self, root: str | Path, force: bool | Iterable[str] = False, sync: RankSync | None = None) -> None:
        self.root = Path(root)
        if isinstance(force, bool):
            self.force: bool | frozenset[str] = force
        elif isinstance(force, str):
            raise ConfigError(f"strategy.force must be true/false or a list of stage kinds, got '{force}'")
        else:
            self.force = frozenset(str(k) for k in force)
        self.sync = sync or RankSync(self.root, 0, 1)

    def forced(self, kind: str) -> bool:
        """Whether ``kind`` must be recomputed even if complete."""
        return self.force if isinstance(self.force, bool) else kind in self.force

    def stage_dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def status(self, kind: str, key: str) -> str:
        """``done`` (complete), ``partial`` (interrupted: will resume) or ``new``."""
        d = self.stage_dir(kind, key)
        if (d / DONE).exists():
            return "done"
        return "partial" if d.exists() else "new"

    def load(self, kind: str, key: str, reused: bool = True) -> StageResult:
        """Read a complete stage's outputs.

        Raises:
            ConfigError: the stage is not complete (no ``done`` marker).
        """
        d = self.stage_dir(kind, key)
        if not (d / DONE).exists():
            raise ConfigError(f"{d}: stage '{kind}' is not complete (no '{DONE}' marker)")
        marker = json.loads((d / DONE).read_text())
        outputs = _absolutise(json.loads((d / OUTPUTS).read_text()), d)
        return StageResult(kind, key, d, outputs, reused, float(marker.get("seconds", 0.0)))

    @contextlib.contextmanager
    def _lock(self, kind: str, key: str) -> Iterator[None]:
        """The stage folder's output lock (:class:`tagseg.io.atomic.OutputLock`): wait for a job computing it."""
        lock = OutputLock(self.stage_dir(kind, key), what=f"{kind} stage")
        try:
            lock.acquire()
        except StoreError:
            log.info("stage %s/%s is being computed by another job: waiting for it", kind, key)
            lock = OutputLock(self.stage_dir(kind, key), wait=True).acquire()
        try:
            yield
        finally:
            lock.release()

    def run(
        self, kind: str, config: Mapping[str, Any], fn: StageFn, collective: bool = False, label: str | None = None
    ) -> StageResult:
        """Return the stage's outputs, computing them with ``fn(stage_dir)`` only when needed.

        Args:
            kind: stage kind, the first level of the cache folder.
            config: the determining config (plain, resolved); hashed into the key.
            fn: computes the stage into the given (existing) folder and returns its outputs
                (paths and JSON-able values). An interrupted earlier attempt's files are still
                there, so ``fn`` may resume (e.g. from ``last.ckpt``).
            collective: every rank must call ``fn`` (training under launcher-created DDP);
                otherwise only rank 0 computes and the other ranks wait for ``done``.
            label: how the stage is named in the log (default ``kind``).

        Returns:
            The :class:`StageResult` (``reused`` tells whether it was computed now).
        """
        key = config_key(kind, config)
        label = label or kind
        d = self.stage_dir(kind, key)
        name = f"{kind}-{key}"
        if not self.sync.is_main:
            decision = self.sync.wait_for(name)
            if decision == "run" and collective:
                fn(d)
            _wait(lambda: (d / DONE).exists() or None, f"{d / DONE}", self.sync.poll_s, self.sync.timeout_s)
            return self.load(kind, key, reused=decision == "reuse")
        with self._lock(kind, key):
            if (d / DONE).exists() and not self.forced(kind):
                result = self.load(kind, key, reused=True)
                log.info("reusing %s: %s (cached %s, computed in %.1f s)", label, d, kind, result.seconds)
                self.sync.announce(name, "reuse")
                return result
            if self.forced(kind) and d.exists():
                log.info("force: recomputing %s in %s", label, d)
                shutil.rmtree(d)
            elif d.exists():
                log.info("resuming %s in %s (interrupted earlier)", label, d)
            else:
                log.info("computing %s in %s", label, d)
            d.mkdir(parents=True, exist_ok=True)
            _atomic_write(d / CONFIG, yaml.safe_dump(json.loads(json.dumps(dict(config), default=str)), sort_keys=True))
            self.sync.announce(name, "run")
            start = time.monotonic()
            outputs = dict(fn(d))
            seconds = time.monotonic() - start
            _atomic_write(d / OUTPUTS, json.dumps(_relativise(outputs, d), indent=2, default=str))
            _atomic_write(
                d / DONE,
                json.dumps(
                    {
                        "kind": kind,
                        "key": key,
                        "label": label,
                        "seconds": seconds,
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    }
                ),
            )
            log.info("finished %s in %.1f s", label, seconds)
        return StageResult(kind, key, d, _absolutise(_relativise(outputs, d), d), False, seconds)
