"""Forward: Brevo jobs out of the store, one worker per Brevo account, over `brevo.py`."""
