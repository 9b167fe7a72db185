"""datajob_worker."""
