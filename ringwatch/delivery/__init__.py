"""Alert delivery: the graph's alert outbox drained to n8n webhooks and Slack, signed.

- `messages`: the alert as JSON for n8n and as a Block Kit message for Slack, with links;
- `signing`: the HMAC-SHA256 signature and the headers every request carries;
- `sinks`: the receivers, routing by priority, one HTTP request and what its answer means;
- `worker`: `deliver_due` (one pass), `run_delivery` (the loop), `send_test_alert`.

The graph side (claiming due alerts under a lease, recording attempts) is
`ringwatch.graph.delivery`.
"""

from ringwatch.delivery.exceptions import DeliveryError
from ringwatch.delivery.sinks import SendResult, Sink
from ringwatch.delivery.worker import (
    DeliverySummary,
    deliver_due,
    run_delivery,
    send_test_alert,
)

__all__ = [
    "DeliveryError",
    "DeliverySummary",
    "SendResult",
    "Sink",
    "deliver_due",
    "run_delivery",
    "send_test_alert",
]
