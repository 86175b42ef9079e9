"""Process: inbox rows through the core's decisions into Brevo jobs (`processor.py`), and the
niced worker process that runs it beside the doors (`worker.py`)."""
