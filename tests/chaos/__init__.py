"""The end-to-end chaos suite: shop traffic in WordPress, faults, an audit, a scorecard row."""
