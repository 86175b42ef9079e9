"""The operator's commands: `woobrevo-agent run | check | ingest | status | deadletters | token |
webhooks | backfill | doctor` (`main.py` parses them; each group has its module)."""

from agent.cli.main import main

__all__ = ["main"]
