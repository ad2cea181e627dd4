"""Reports (layer L7): Markdown/console rendering and plots of a run's record.

These modules read result dicts and dataclasses only; they never train or simulate.
"""
