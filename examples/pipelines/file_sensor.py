"""A file sensor (Airflow's ``FileSensor``, Luigi's ``ExternalTask``, Dagster's sensors): wait for the
day's export to land, then load it.

    landed (sensor: poke every 0.2 s, at most 60 s) ──> load

While it waits the sensor is one attempt, recorded ``waiting``, and holds no worker.
"""

from __future__ import annotations

from agent.pipeline import Pipeline
from agent.sensors import file_exists

pipe = Pipeline("file_sensor", params={"landing": "landing"})

pipe.sensor(name="landed", poke=0.2, timeout=60)(file_exists("{landing}/orders-{logical_date:%Y-%m-%d}.csv"))


@pipe.task
def load(landed: list[str]) -> int:
    with open(landed[0]) as f:
        return sum(1 for _ in f) - 1
