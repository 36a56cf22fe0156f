"""Spread monitoring (舆情监测): rolling counters over arriving event files, alerts and holds.

``run_monitor`` is one run, meant to be called every few minutes by a
scheduler (``recsys monitor``): it reads only the event files (or the part of
a growing CSV file) no earlier run counted, updates compact per-item counters
(:mod:`recsys.monitor.counters`), tests every item and topic against its
baseline (:mod:`recsys.monitor.alarms`), appends alerts to ``alerts.jsonl``
and puts items with a severe wave of reports on hold (:mod:`recsys.holds`).
The state folder is crash-consistent (:mod:`recsys.monitor.state`).
"""

from recsys.monitor.run import ALERTS_FILE, MonitorReport, alert_line, run_monitor

__all__ = ["ALERTS_FILE", "MonitorReport", "alert_line", "run_monitor"]
