"""The promoted model, loaded once per process and only when there is one.

`promoted_model(root, check_every)` is what the API calls on its request path. It looks at the
registry's ``PROMOTED`` pointer at most every `check_every` seconds (a file read), loads the
model when the pointer names a version it does not hold yet, and otherwise returns what it
holds. Nothing here imports PyTorch: loading does, the first time a model is promoted, so an
API with no promoted model never has torch in its process.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ringwatch.models.exceptions import ModelError
from ringwatch.models.registry import LoadedModel, ModelRegistry

log = logging.getLogger(__name__)


class PromotedModelCache:
    """Holds the promoted model of one registry; thread-safe, reloads on promotion."""

    def __init__(self, root: Path, check_every: float) -> None:
        self.registry = ModelRegistry(root)
        self.check_every = check_every
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._version: str | None = None
        self._model: LoadedModel | None = None

    def get(self) -> LoadedModel | None:
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return self._model
        with self._lock:
            if now - self._checked < self.check_every:
                return self._model
            version = self.registry.promoted_version()
            if version != self._version:
                self._model = self._load(version)
                self._version = version
            self._checked = now
            return self._model

    def _load(self, version: str | None) -> LoadedModel | None:
        if version is None:
            return None
        try:
            model = self.registry.load(version)
        except (ModelError, OSError, ImportError) as exc:
            # A broken artefact or a process without the gnn extra: score without the GNN
            # rather than fail every request; the log says why.
            log.error("cannot load the promoted model %s: %s", version, exc)
            return None
        log.info("loaded the promoted model %s (%s)", version, model.manifest.kind)
        return model


_CACHES: dict[Path, PromotedModelCache] = {}
_CACHES_LOCK = threading.Lock()


def promoted_model(root: Path, check_every: float = 30.0) -> LoadedModel | None:
    """The promoted model of the registry at `root`, or None (see the module docstring)."""
    key = root.expanduser()
    cache = _CACHES.get(key)
    if cache is None:
        with _CACHES_LOCK:
            cache = _CACHES.setdefault(key, PromotedModelCache(key, check_every))
    return cache.get()
