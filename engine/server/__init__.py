"""Listeners: TCP producers, the HTTP API and Arrow Flight. They move bytes and batches;
they never parse."""
