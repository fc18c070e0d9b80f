"""mmbench: a benchmark suite and leaderboard for multimodal survival prediction."""

__version__ = "0.1.0"
