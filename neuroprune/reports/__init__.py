"""Reports (layer L3): report.json assembly, Markdown/console rendering and plots.

These modules read result dicts and dataclasses only; they never train or simulate.
"""
