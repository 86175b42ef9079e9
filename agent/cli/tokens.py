"""`woobrevo-agent token create|list|revoke`: site tokens for the stream door (agent/tokens.py).

A token is shown once, when it is created; the agent keeps only its SHA-256. With `--store` the
hash goes into the state store and a running agent accepts it on the next handshake; without,
the hash is printed for the config (`token_sha256` of the site), which a running agent re-reads
when the file changes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from agent.config import Config, load_config
from agent.core.times import display_time
from agent.errors import EXIT_FAIL, EXIT_OK
from agent.store.open import Store, store_info
from agent.store.open import open_store as open_config_store
from agent.tokens import all_tokens, find_hash, new_token, revoke_token, store_token, token_hash

__all__ = ["add_token_parsers", "open_store", "token_create", "token_list", "token_revoke"]


def open_store(cfg: Config) -> Store:
    """The agent's store, opened beside a running agent without touching its in-flight jobs."""
    return open_config_store(cfg.agent, recover=False)


def _when(ts: float | None) -> str:
    return "-" if ts is None else display_time(ts)


def token_create(args: argparse.Namespace) -> int:
    """Print a new token once, and its hash for the config (or store the hash with --store)."""
    cfg = load_config(args.config)
    cfg.site(args.site)  # an unknown site is a ConfigError naming the known ones
    token = new_token()
    digest = token_hash(token)
    if args.store:

        async def run() -> None:
            async with open_store(cfg) as store:
                await store_token(store, args.site, digest, time.time())

        asyncio.run(run())
    print(f"token for site {args.site} (give it to the plugin; it is not shown again):")
    print(f"  {token}")
    if args.store:
        where = store_info(cfg.agent).address
        print(f"sha256 {digest} stored in {where}; a running agent accepts it now")
    else:
        print("add its SHA-256 to the site in the config (a running agent re-reads the file):")
        print(f"  token_sha256: {digest}")
    return EXIT_OK


def token_list(args: argparse.Namespace) -> int:
    """Every token hash the agent knows, with its site, source and state."""
    cfg = load_config(args.config)

    async def run() -> list[Any]:
        async with open_store(cfg) as store:
            return await all_tokens(cfg, store)

    records = [r for r in asyncio.run(run()) if not args.site or r.site == args.site]
    if not records:
        print("no tokens")
        return EXIT_OK
    print(f"{'site':<16} {'sha256':<18} {'source':<7} {'created':<21} state")
    for r in records:
        state = "active" if r.revoked_at is None else f"revoked {_when(r.revoked_at)}"
        print(f"{r.site:<16} {r.sha256[:16]:<18} {r.source:<7} {_when(r.created_at):<21} {state}")
    return EXIT_OK


def token_revoke(args: argparse.Namespace) -> int:
    """Refuse a token from the next handshake on (a token in the config too)."""
    cfg = load_config(args.config)

    async def run() -> int:
        async with open_store(cfg) as store:
            records = await all_tokens(cfg, store)
            if args.site:
                records = [r for r in records if r.site == args.site]
            found = find_hash(records, args.hash)
            if isinstance(found, str):
                print(found)
                return EXIT_FAIL
            if found.revoked_at is not None:
                print(f"token {found.sha256[:16]} of site {found.site} was already revoked")
                return EXIT_OK
            await revoke_token(store, found, time.time())
            print(
                f"token {found.sha256[:16]} of site {found.site} revoked; the next handshake is refused"
            )
            if found.source == "config":
                print("its hash is still in the config: remove that token_sha256 when convenient")
            return EXIT_OK

    return asyncio.run(run())


def add_token_parsers(sub: Any) -> None:
    """Add `token create|list|revoke` to the CLI's subparsers."""
    tok = sub.add_parser("token", help="create, list or revoke the plugin's site tokens")
    tsub = tok.add_subparsers(dest="token_command", required=True)

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = tsub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="the YAML config file")
        return p

    create = cmd("create", "print a new token once, and its hash")
    create.add_argument("--site", required=True, help="the site id the token names")
    create.add_argument(
        "--store", action="store_true", help="write the hash into the state store (no config edit)"
    )
    create.set_defaults(fn=token_create)

    lst = cmd("list", "list token hashes, sites and states")
    lst.add_argument("--site")
    lst.set_defaults(fn=token_list)

    rev = cmd("revoke", "refuse a token from the next handshake on")
    rev.add_argument("hash", help="the hash or its first 8+ hex characters (see `token list`)")
    rev.add_argument("--site", help="only look among this site's tokens")
    rev.set_defaults(fn=token_revoke)
