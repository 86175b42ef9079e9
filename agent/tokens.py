"""Site tokens: the agent keeps only their SHA-256 and says which site a token names.

Two places hold hashes. The config (`token_sha256` of a site) is read at start and again when
the file changes: every handshake stats the file, so an edit takes effect on the next handshake
without a restart or a signal. The state store (`token create --store`) is read on every
handshake, so a token created or revoked there also takes effect on the next handshake. A
revocation in the store also refuses a token whose hash is still in the config.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.config import Config
from agent.errors import ConfigError
from agent.store.ports import MetaStore

__all__ = [
    "STORE_PREFIX",
    "TokenRecord",
    "TokenRegistry",
    "all_tokens",
    "find_hash",
    "new_token",
    "revoke_token",
    "store_token",
    "token_hash",
]

log = logging.getLogger("agent.tokens")

STORE_PREFIX = "token:"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What the agent knows of one token: never the token itself."""

    sha256: str
    site: str
    source: str  # "config" or "store"
    created_at: float | None = None
    revoked_at: float | None = None


def new_token() -> str:
    """A fresh token: 32 random bytes (256 bits) as 43 URL-safe base64 characters."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The SHA-256 (hex) the agent stores in place of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _record(key: str, value: str) -> TokenRecord | None:
    try:
        data = json.loads(value)
        return TokenRecord(
            sha256=key.removeprefix(STORE_PREFIX),
            site=str(data["site"]),
            source=str(data.get("source", "store")),
            created_at=data.get("created_at"),
            revoked_at=data.get("revoked_at"),
        )
    except (ValueError, KeyError, TypeError):
        log.error("unreadable token record %s in the store; ignored", key[: len(STORE_PREFIX) + 12])
        return None


def _dump(rec: TokenRecord) -> str:
    data = asdict(rec)
    del data["sha256"]
    return json.dumps(data, sort_keys=True)


def _config_hashes(cfg: Config) -> list[tuple[str, str]]:
    return [(s.woo.token_sha256, s.id) for s in cfg.resolved_sites() if s.woo.token_sha256]


async def store_token(store: MetaStore, site: str, sha256: str, now: float) -> TokenRecord:
    """Record a new token's hash for `site` in the store."""
    rec = TokenRecord(sha256=sha256, site=site, source="store", created_at=now)
    await store.set_meta(STORE_PREFIX + sha256, _dump(rec))
    return rec


async def revoke_token(store: MetaStore, rec: TokenRecord, now: float) -> TokenRecord:
    """Mark a token revoked in the store (for a config token too: the store's word wins)."""
    revoked = TokenRecord(rec.sha256, rec.site, rec.source, rec.created_at, rec.revoked_at or now)
    await store.set_meta(STORE_PREFIX + rec.sha256, _dump(revoked))
    return revoked


async def all_tokens(cfg: Config, store: MetaStore) -> list[TokenRecord]:
    """Every known token: the config's and the store's, a store record winning for its hash."""
    out: dict[str, TokenRecord] = {
        h: TokenRecord(h, site, "config") for h, site in _config_hashes(cfg)
    }
    for key, value in (await store.meta_items(STORE_PREFIX)).items():
        rec = _record(key, value)
        if rec is not None:
            out[rec.sha256] = rec
    return sorted(out.values(), key=lambda r: (r.site, r.created_at or 0.0, r.sha256))


def find_hash(records: Collection[TokenRecord], prefix: str) -> TokenRecord | str:
    """The one record whose hash starts with `prefix`, or a message saying why not."""
    prefix = prefix.strip().lower()
    if len(prefix) < 8:
        return "give at least 8 hex characters of the hash (`token list` shows them)"
    found = [r for r in records if r.sha256.startswith(prefix)]
    if not found:
        return f"no token hash starts with {prefix}"
    if len(found) > 1:
        return f"{len(found)} token hashes start with {prefix}; give more characters"
    return found[0]


class TokenRegistry:
    """Answers "which site does this token name?" for the handshake, or None."""

    def __init__(
        self,
        cfg: Config,
        store: MetaStore,
        *,
        sites: Collection[str],
        reload: Callable[[Path], Config] | None = None,
    ) -> None:
        self.store = store
        self.sites = frozenset(sites)  # sites the running agent serves (a reload changes them)
        self._reload = reload
        self._path = Path(cfg.source) if reload is not None and cfg.source != "<memory>" else None
        self._config = _config_hashes(cfg)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> None:
        """Re-read the config's hashes if the file changed since the last read."""
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp or self._reload is None or self._path is None:
            return
        self._stamp = stamp
        try:
            cfg = self._reload(self._path)
        except ConfigError as exc:
            # Keep serving with the hashes we have: a half-edited file must not lock every
            # site out. The error says what to fix.
            log.error("config changed but cannot be read; keeping the previous tokens: %s", exc)
            return
        self._config = _config_hashes(cfg)
        log.info("config changed; %d token hashes reloaded", len(self._config))

    def reconfigure(self, cfg: Config, sites: Collection[str]) -> None:
        """A config reload (agent/reload.py): the sites served now and the config's hashes."""
        self.sites = frozenset(sites)
        self._config = _config_hashes(cfg)
        self._stamp = self._file_stamp()

    async def authenticate(self, token: str | None) -> str | None:
        """The site `token` names, or None (missing, unknown, revoked, or for an unknown site)."""
        if not token:
            return None
        return await self.authenticate_digest(token_hash(token))

    async def authenticate_digest(self, digest: str) -> str | None:
        """The site a token's SHA-256 names now, or None (the handshake's check)."""
        self.refresh()
        # The store is looked up by the hash itself: lookup timing can only tell an attacker
        # about hashes of tokens they already hold, never about an unknown token.
        return self._site_for(digest, await self.store.get_meta(STORE_PREFIX + digest))

    async def sites_for(self, digests: Collection[str]) -> dict[str, str | None]:
        """What `authenticate_digest` says of each hash, from one read of the store: the stream
        door re-checks every open connection with it (a revoked token closes them)."""
        self.refresh()
        stored = await self.store.meta_items(STORE_PREFIX)
        return {d: self._site_for(d, stored.get(STORE_PREFIX + d)) for d in set(digests)}

    def _site_for(self, digest: str, raw: str | None) -> str | None:
        # Compare against every configured hash without stopping early, so the time taken
        # does not depend on which hash (if any) matched.
        from_config: str | None = None
        for known, named in self._config:
            if hmac.compare_digest(known, digest):
                from_config = named
        rec = _record(STORE_PREFIX + digest, raw) if raw is not None else None
        if rec is not None and rec.revoked_at is not None:
            log.info("revoked token %s refused", digest[:12])
            return None
        site = rec.site if rec is not None else from_config
        if rec is not None and from_config is not None and from_config != rec.site:
            log.error(
                "token %s is configured for site %s but stored for site %s; refused",
                digest[:12],
                from_config,
                rec.site,
            )
            return None
        if site is None:
            return None
        if site not in self.sites:
            log.warning(
                "token %s names site %s, which this agent does not serve", digest[:12], site
            )
            return None
        return site
