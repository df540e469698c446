"""rf: train many TRL fine-tuning configurations at once, chunk by chunk."""

__version__ = "0.1.0"
