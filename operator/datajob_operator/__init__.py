"""datajob_operator."""
