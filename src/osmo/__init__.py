"""osmo: a workflow platform for robotics and AI teams."""

__version__ = "0.1.0"
