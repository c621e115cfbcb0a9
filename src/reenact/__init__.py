"""reenact: face reenactment and talking-head generation under one trainer, one data pipeline and one metrics suite."""

__version__ = "0.1.0"
