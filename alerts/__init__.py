"""Alert rules, their evaluator and notifiers (Alertmanager, webhooks).

Rules may reference only metrics of ``exporters/catalogue.py``; a test parses
every PromQL expression in the rule files kept here.
"""

__all__: list[str] = []
