"""Delivery: the in-process queue, the sender, and the oslo.messaging publishers."""
