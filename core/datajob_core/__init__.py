"""datajob_core."""
