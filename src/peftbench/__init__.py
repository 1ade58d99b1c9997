"""peftbench: compare fine-tuning methods side by side under identical conditions."""

__version__ = "0.1.0"
