"""Grafana dashboards (JSON) that import as they are, and provisioning examples.

Panels may reference only metrics of ``exporters/catalogue.py``; a test parses
every PromQL expression in the dashboards kept here.
"""

__all__: list[str] = []
