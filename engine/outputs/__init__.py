"""Where batches go once parsed: live fan-out to consumers (``hub``)."""
