"""Where the SOC's inputs travel: subjects, streams, consumers and buckets.

- ``aoc.in.soc.alerts`` — intake for raw producers (core NATS; ``nats req`` or ``nats pub``).
  The body is one alert, a JSON array or NDJSON, in AOC's own shape or a product's
  (the format is detected); ``aoc.in.soc.alerts.<format>`` names the format
  (``suricata-eve``, ``wazuh``, ``ecs``, ``ocsf``, ``aoc``). The soc-cycle process maps,
  validates and replies ``IntakeReply`` (after the alerts are stored).
- ``aoc.q.soc.alerts`` — validated alerts, captured by the work-queue stream
  ``AOC_ALERTS``; the gateway's ``POST /api/v1/soc/alerts`` publishes here directly.
  Triage pulls from it with the durable consumer ``soc-triage`` (shared by scaled-out
  instances) and decodes every message again, so a producer that bypasses the intake
  still cannot put a half-parsed alert in front of the models.
- ``aoc.in.soc.feedback`` — analyst verdicts from raw producers (validated and enriched
  with the alert by the soc-cycle process, like alerts).
- ``aoc.q.soc.feedback`` — validated, enriched verdicts, kept in ``AOC_FEEDBACK`` (limits
  retention: it is the labelled training set). ml-retrain consumes it with a durable
  consumer; the SOC follows it to close escalations.
- KV ``aoc_webhook_deliveries`` — the delivery ids of webhook pushes already accepted
  (``POST /api/v1/webhooks/alerts/{source}``): a redelivery is accepted once, across
  gateway restarts.
"""

from __future__ import annotations

SOC_SYSTEM = "soc-cycle"  # the engine's slug: its events are aoc.evt.soc-cycle.<type>

ALERT_INTAKE = "aoc.in.soc.alerts"
ALERT_FORMAT_INTAKE = "aoc.in.soc.alerts.*"  # the last token names the format
ALERT_QUEUE = "aoc.q.soc.alerts"
FEEDBACK_INTAKE = "aoc.in.soc.feedback"
FEEDBACK_QUEUE = "aoc.q.soc.feedback"

ALERTS_STREAM = "AOC_ALERTS"
FEEDBACK_STREAM = "AOC_FEEDBACK"
TRIAGE_CONSUMER = "soc-triage"
ML_FEEDBACK_CONSUMER = "ml-retrain-feedback"

WEBHOOK_DELIVERIES_BUCKET = "aoc_webhook_deliveries"
