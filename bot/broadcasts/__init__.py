"""Broadcasts and drive reminders: compose, create (outbox), send (worker), remind.

- `compose`: the message a recipient gets, rendered from Jinja text in a sandbox.
- `service`: create a broadcast with its deliveries in one transaction; status, cancel, retry.
- `worker`: lease due deliveries, send them through the WeChat API, record the outcome.
- `reminders`: the automatic reminders, created once per (jurisdiction, kind, period, unit).
- `quiet`: quiet hours.
"""
