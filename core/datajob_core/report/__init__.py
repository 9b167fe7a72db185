"""The run report: what a job did, attempt by attempt (history), drawn as a page (page), kept beside the
output (files)."""
