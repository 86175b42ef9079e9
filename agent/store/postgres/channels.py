"""The LISTEN/NOTIFY channels the replicas wake each other on (agent/store/postgres/cluster.py
`listening`): a batch stored (the processors look) and jobs planned (the forwarders look)."""

__all__ = ["INBOX_CHANNEL", "JOBS_CHANNEL"]

INBOX_CHANNEL = "woobrevo_inbox"
JOBS_CHANNEL = "woobrevo_jobs"
