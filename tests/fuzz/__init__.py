"""Fuzzing (hypothesis) of the stream protocol, the webhook doors and the config loader.

CI runs a small, derandomized budget (a few hundred inputs per target, well under 90 s in
all); `WOOBREVO_FUZZ=long` runs thousands from a fresh seed, printed in pytest's header
(`WOOBREVO_FUZZ_SEED=N` replays one). tests/fuzz/budget.py has the settings.
"""
