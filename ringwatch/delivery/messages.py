"""What the receivers get: the alert as JSON for n8n, and a Block Kit message for Slack.

Both are built from one *document*, the alert as the outside world sees it:

```json
{"id": "alert-…", "dedup_key": "subscriber:risk:S-1", "kind": "risk",
 "entity": {"kind": "subscriber", "id": "S-1"}, "priority": "P1", "risk": 0.91,
 "decision": "BLOCK", "reasons": [{"code": "…", "text": "…", "weight": 0.6, "evidence": {}}],
 "created_at": "2026-03-01T12:00:00+00:00", "escalated_from": null, "test": false,
 "links": {"api": "http://…/v1/subscribers/S-1", "browser": "http://…/browser/?cmd=edit&arg=…"},
 "sent_at": 1772366400}
```

`sent_at` (Unix seconds, n8n only) equals the `X-Ringwatch-Timestamp` header, so the signature
over the body covers the time of sending too. Strings from the graph are escaped for Slack's
mrkdwn and quoted for Cypher; nothing from an alert is ever formatted into a query that ringwatch
runs (the Browser link only opens an editor for a person to run).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from ringwatch.config import AlertsConfig, ScoringConfig
from ringwatch.graph.alerts import StoredAlert
from ringwatch.scoring.reasons import ranked
from ringwatch.scoring.risk import decision

# Slack Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
CONTEXT_TEXT_MAX = 3000
BUTTON_TEXT_MAX = 75
BUTTON_URL_MAX = 3000
FALLBACK_TEXT_MAX = 3000

TOP_REASONS = 3

_IDENTIFIER_LINKS = "USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cypher_string(value: str) -> str:
    """A Cypher string literal for a query a person opens in Browser (never run by ringwatch)."""
    escaped = (
        value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    )
    return f"'{escaped}'"


def api_url(config: AlertsConfig, entity_kind: str, entity_id: str) -> str:
    collection = "rings" if entity_kind == "ring" else "subscribers"
    return f"{config.api_base_url.rstrip('/')}/v1/{collection}/{quote(entity_id, safe='')}"


def browser_query(entity_kind: str, entity_id: str) -> str:
    """The investigation query for an entity: a ring with its members' identifiers, or a
    subscriber with its identifiers and the other subscribers sharing them."""
    literal = cypher_string(entity_id)
    if entity_kind == "ring":
        return (
            f"MATCH (r:Ring {{id: {literal}}})<-[m:MEMBER_OF]-(s:Subscriber)\n"
            f"OPTIONAL MATCH (s)-[l:{_IDENTIFIER_LINKS}]->(i)\n"
            "RETURN r, m, s, l, i LIMIT 300"
        )
    return (
        f"MATCH (s:Subscriber {{id: {literal}}})\n"
        f"OPTIONAL MATCH (s)-[l:{_IDENTIFIER_LINKS}]->(i)\n"
        "OPTIONAL MATCH (i)<-[m]-(o:Subscriber)\n"
        "RETURN s, l, i, m, o LIMIT 300"
    )


def browser_url(config: AlertsConfig, entity_kind: str, entity_id: str) -> str:
    """Neo4j Browser with the investigation query in its editor (``?cmd=edit&arg=…``)."""
    arguments = {"cmd": "edit", "arg": browser_query(entity_kind, entity_id)}
    return f"{config.browser_url}?{urlencode(arguments, quote_via=quote)}"


def alert_document(
    alert: StoredAlert, config: AlertsConfig, scoring: ScoringConfig, *, test: bool = False
) -> dict[str, Any]:
    """The alert as receivers see it (without `sent_at`, added per request)."""
    return {
        "id": alert.id,
        "dedup_key": alert.dedup_key,
        "kind": alert.kind,
        "entity": {"kind": alert.entity_kind, "id": alert.entity_id},
        "priority": alert.priority.value,
        "risk": round(alert.risk, 4),
        "decision": decision(alert.risk, scoring).value,
        "reasons": [reason.to_dict() for reason in ranked(alert.reasons)],
        "created_at": _iso(alert.created_at),
        "escalated_from": alert.escalated_from,
        "test": test,
        "links": {
            "api": api_url(config, alert.entity_kind, alert.entity_id),
            "browser": browser_url(config, alert.entity_kind, alert.entity_id),
        },
    }


def _iso(value: datetime) -> str:
    return value.isoformat()


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def n8n_body(document: Mapping[str, Any], sent_at: int) -> bytes:
    return encode({**document, "sent_at": sent_at})


def _kind_label(kind: str) -> str:
    return "risk" if kind == "risk" else kind


def slack_message(document: Mapping[str, Any], *, n8n_failure: str | None = None) -> dict[str, Any]:
    """A Block Kit message: header, the facts as fields, the top reasons, links.

    `n8n_failure` says why n8n did not take the alert, when Slack stands in for it: the
    automated actions of the n8n workflow did not run.
    """
    entity = document["entity"]
    entity_name = f"{entity['kind']} {entity['id']}"
    test = bool(document.get("test"))
    prefix = "[TEST] " if test else ""
    title = f"{prefix}{document['priority']} {_kind_label(document['kind'])} alert: {entity_name}"
    reasons = list(document.get("reasons") or [])[:TOP_REASONS]
    if reasons:
        reason_lines = "\n".join(f"• {mrkdwn_escape(str(r['text']))}" for r in reasons)
    else:
        reason_lines = "_no reasons recorded_"
    facts = {
        "Entity": f"{mrkdwn_escape(entity['kind'])} `{mrkdwn_escape(str(entity['id']))}`",
        "Priority": str(document["priority"]),
        "Risk": f"{float(document['risk']):.2f}",
        "Decision": str(document["decision"]),
    }
    context = [
        f"alert `{mrkdwn_escape(str(document['id']))}`",
        f"kind `{mrkdwn_escape(str(document['kind']))}`",
        f"raised {mrkdwn_escape(str(document['created_at']))}",
    ]
    if document.get("escalated_from"):
        context.append(f"escalates `{mrkdwn_escape(str(document['escalated_from']))}`")
    if test:
        context.append("*test alert from `ringwatch alerts test`: no action needed*")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(_truncate(title, HEADER_MAX))},
        {
            "type": "section",
            "fields": [
                _mrkdwn(_truncate(f"*{name}*\n{value}", FIELD_TEXT_MAX))
                for name, value in facts.items()
            ],
        },
        {
            "type": "section",
            "text": _mrkdwn(_truncate(f"*Top reasons*\n{reason_lines}", SECTION_TEXT_MAX)),
        },
    ]
    if n8n_failure:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    _mrkdwn(
                        _truncate(
                            ":warning: n8n did not accept this alert "
                            f"({mrkdwn_escape(n8n_failure)}): its automated actions did not run.",
                            CONTEXT_TEXT_MAX,
                        )
                    )
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [_mrkdwn(_truncate(" · ".join(context), CONTEXT_TEXT_MAX))],
        }
    )
    links = document["links"]
    buttons = [
        _button("open_api", "Open in ringwatch API", links["api"]),
        _button("open_browser", "Investigate in Neo4j Browser", links["browser"]),
    ]
    # A link too long for a button (a huge entity id) is left out rather than cut.
    buttons = [button for button in buttons if len(button["url"]) <= BUTTON_URL_MAX]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    fallback = f"{title} (risk {float(document['risk']):.2f}, {document['decision']})"
    return {"text": _truncate(fallback, FALLBACK_TEXT_MAX), "blocks": blocks}


def slack_body(document: Mapping[str, Any], *, n8n_failure: str | None = None) -> bytes:
    return encode(slack_message(document, n8n_failure=n8n_failure))


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _button(action_id: str, text: str, url: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": _plain(_truncate(text, BUTTON_TEXT_MAX)),
        "url": url,
    }
