"""Real-time scoring of a prospective signup and of a transaction. Nothing is written.

A signup is scored by what the graph already knows about its identifiers: who uses each one
(hubs are counted, not followed), the rings those subscribers belong to and their stored ring
risk, subscribers confirmed fraud among them, and how much of the prospect's weighted identifier
set one existing account already has (likely the same person). The evidence is scored with the
same functions as the batch graph risk (`ringwatch.scoring.graph`).

A transaction is scored with the subscriber's real-time usage evidence of the 24 h up to it
(`ringwatch.graph.usage_scores.usage_features_for`), plus what the transaction itself adds:
charges over the daily limit with it, a device or IP the subscriber never used, impossible
travel from its last located transaction. That usage risk is merged with the stored graph and
GNN risk by the label-free rule merge.

When a GNN is promoted (`ringwatch models promote`), both are also scored by it inductively
from their neighbourhood in the graph, without retraining (`ringwatch.graph.gnn_live`): the
signup's risk and the transaction's become the noisy-OR with that `gnn` component, and its
reason names the model and the strongest neighbour. The model is loaded once per process, on
the first request after a promotion; with none promoted PyTorch is never imported.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, LiteralString, Self

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ringwatch.config import ScoringConfig
from ringwatch.graph.analytics import identifier_weights
from ringwatch.graph.gnn_live import score_prospect, score_subscriber
from ringwatch.graph.usage_scores import usage_features_for
from ringwatch.graph.writer import IDENTIFIER_SCHEMA
from ringwatch.ingest.events import (
    MAX_IDENTIFIERS_PER_KIND,
    CountryCode,
    CurrencyCode,
    Id,
    Identifiers,
    RawAddress,
    RawIdentifier,
)
from ringwatch.ingest.exceptions import NormalisationError
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.ingest.prepare import SPEND_KINDS, IdentifierLink, Preparer
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.graph import (
    SharedIdentifier,
    SubscriberFacts,
    masked,
    noisy_or,
    subscriber_graph_risk,
)
from ringwatch.scoring.merge import apply_label, merged_reasons, rule_merge
from ringwatch.scoring.reasons import Reason, ranked
from ringwatch.scoring.risk import decision, priority
from ringwatch.scoring.usage import (
    NEW_IDENTIFIER_AFTER,
    Component,
    Hop,
    Located,
    NewIdentifier,
    charge_strength,
    fastest_hop,
    new_identifier_strength,
    score_usage,
    travel_strength,
)
from ringwatch.service.deps import AppSettings, Graph
from ringwatch.service.errors import ApiError, not_found
from ringwatch.service.routes.common import ReasonOut
from ringwatch.service.routes.subscribers import KIND_OF, LINKS
from ringwatch.service.security import ReadKey

router = APIRouter(prefix="/v1/score", tags=["scoring"])

# Users shown per identifier at most; a non-hub identifier has at most `hub_cap` of them.
MAX_USERS_PER_IDENTIFIER = 200
# How far back the last located transaction is looked for (impossible travel).
TRAVEL_LOOKBEHIND = timedelta(days=7)
# Reads a score makes beside the request's own thread (usage evidence, the GNN's neighbourhood).
_READS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="score-read")


def _preparer(settings: Any) -> Preparer:
    return Preparer(
        pii_hmac_key=settings.scoring.pii_hmac_key, default_region=settings.ingest.default_region
    )


def _invalid(exc: NormalisationError) -> ApiError:
    # The path names the value; the value itself is never echoed back or logged. The signup
    # body is the event's `identifiers` itself, so its paths start at the list.
    location = "body." + exc.field.removeprefix("identifiers.")
    return ApiError(
        422,
        "invalid_identifier",
        f"{location}: {exc.reason}",
        {"problems": [{"location": location, "problem": exc.reason}]},
    )


# --- signup -------------------------------------------------------------------------------------


def _identifier_list(description: str) -> Any:
    return Field(default=(), max_length=MAX_IDENTIFIERS_PER_KIND, description=description)


class SignupIn(BaseModel):
    """A prospective subscriber's identifiers, as the identity events carry them."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    devices: tuple[RawIdentifier, ...] = _identifier_list("IMEI / IMEISV or device fingerprint.")
    addresses: tuple[RawAddress, ...] = _identifier_list("Postal addresses, free text.")
    payment_methods: tuple[RawIdentifier, ...] = Field(
        default=(),
        max_length=MAX_IDENTIFIERS_PER_KIND,
        repr=False,
        description="Card numbers, IBANs or payment tokens (only their fingerprints are used).",
    )
    phones: tuple[RawIdentifier, ...] = _identifier_list("MSISDN, E.164 or national format.")
    emails: tuple[RawIdentifier, ...] = _identifier_list("Email addresses.")
    ips: tuple[RawIdentifier, ...] = _identifier_list("IPv4 or IPv6 addresses.")
    created_at: AwareDatetime | None = Field(
        default=None, description="When the account would open (default: now)."
    )

    @model_validator(mode="after")
    def _something_to_score(self) -> Self:
        if not any(
            (self.devices, self.addresses, self.payment_methods, self.phones, self.emails,
             self.ips)
        ):  # fmt: skip
            raise ValueError("at least one identifier is needed")
        return self

    def identifiers(self) -> Identifiers:
        return Identifiers(
            devices=self.devices,
            addresses=self.addresses,
            payment_methods=self.payment_methods,
            phones=self.phones,
            emails=self.emails,
            ips=self.ips,
        )


class MatchedIdentifier(BaseModel):
    kind: str = Field(description="device, address, payment_method, phone, email or ip.")
    id: str = Field(description="The stored id, masked to its first characters.")
    subscribers: int = Field(description="Subscribers already using it.")
    hub: bool = Field(description="Shared too widely to mean anything (not followed).")
    rings: list[str] = Field(description="Rings its users belong to.")
    labelled_fraud: int = Field(description="Its users confirmed fraud.")


class SignupScore(BaseModel):
    risk: float
    priority: str
    decision: str
    components: dict[str, float] = Field(
        description="graph, and gnn when a model is promoted (scored from the neighbourhood)."
    )
    reasons: list[ReasonOut]
    identifiers: int = Field(description="Distinct identifiers checked (after normalisation).")
    matched: list[MatchedIdentifier] = Field(description="Those already in the graph.")


def _signup_query(kinds: list[IdentifierKind]) -> LiteralString:
    # One branch per identifier kind: labels are constants of IDENTIFIER_SCHEMA, ids parameters.
    branches: list[LiteralString] = []
    for kind in kinds:
        schema = IDENTIFIER_SCHEMA[kind]
        branches.append(
            f"  UNWIND ${kind.value} AS id MATCH (i:{schema.label} {{id: id}})\n"
            f"  RETURN i, '{schema.relationship}' AS rel\n"
        )
    union: LiteralString = "  UNION ALL\n".join(branches)
    return (
        "CALL () {\n" + union + "}\n"
        "WITH i, rel, coalesce(i.hub, false) AS hub\n"
        "CALL (i, hub) {\n"
        f"  OPTIONAL MATCH (i)<-[:{LINKS}]-(s:Subscriber) WHERE NOT hub\n"
        "  WITH s ORDER BY s.id LIMIT $max_users\n"
        "  RETURN collect(s {.id, .ring_id, .label,\n"
        f"    types: [(s)-[l:{LINKS}]->(j) WHERE NOT coalesce(j.hub, false) | type(l)]}})"
        " AS users\n"
        "}\n"
        "WITH collect({rel: rel, id: i.id, hub: hub, subscribers: coalesce(i.subscribers, 0),\n"
        "              users: users}) AS found\n"
        "CALL (found) {\n"
        "  UNWIND found AS f UNWIND f.users AS u\n"
        "  WITH DISTINCT u.ring_id AS ring_id WHERE ring_id IS NOT NULL\n"
        "  MATCH (r:Ring {id: ring_id}) WHERE r.status = 'active'\n"
        "  RETURN collect(r {.id, .size, .risk, .reasons}) AS rings\n"
        "}\n"
        "RETURN found, rings"
    )


_SIGNUP_QUERIES: dict[tuple[IdentifierKind, ...], LiteralString] = {}


def _signup_lookup(kinds: list[IdentifierKind]) -> LiteralString:
    key = tuple(kinds)
    if key not in _SIGNUP_QUERIES:
        _SIGNUP_QUERIES[key] = _signup_query(kinds)
    return _SIGNUP_QUERIES[key]


def score_signup_evidence(
    links: tuple[IdentifierLink, ...],
    found: list[dict[str, Any]],
    rings: list[dict[str, Any]],
    *,
    created_at: datetime,
    config: ScoringConfig,
) -> tuple[float, list[Reason], list[MatchedIdentifier]]:
    """Graph risk of a prospect from what its identifiers are linked to (pure)."""
    weights = identifier_weights(config)
    rel_of = {kind: IDENTIFIER_SCHEMA[kind].relationship for kind in IdentifierKind}
    # The prospect's own weighted identifier set, as the similarity projection would see it.
    hubs = {(row["rel"], row["id"]) for row in found if row["hub"]}
    own_weight = sum(
        weights.get(rel_of[link.kind], 0.0)
        for link in links
        if not link.placeholder and (rel_of[link.kind], link.id) not in hubs
    )
    ring_by_id = {ring["id"]: ring for ring in rings}
    shared: list[SharedIdentifier] = []
    shared_weight: dict[str, float] = defaultdict(float)
    user_weight: dict[str, float] = {}
    fraud_users: set[str] = set()
    joined: dict[str, list[str]] = defaultdict(list)  # ring id -> masked identifiers into it
    matched: list[MatchedIdentifier] = []
    for row in sorted(found, key=lambda r: (r["rel"], r["id"])):
        users = row["users"]
        weight = weights.get(row["rel"], 0.0)
        user_rings = sorted({u["ring_id"] for u in users if u.get("ring_id")})
        matched.append(
            MatchedIdentifier(
                kind=KIND_OF.get(row["rel"], row["rel"]),
                id=masked(row["id"]),
                subscribers=int(row["subscribers"]),
                hub=bool(row["hub"]),
                rings=user_rings,
                labelled_fraud=sum(1 for u in users if u.get("label") == "fraud"),
            )
        )
        if row["hub"] or weight <= 0 or not users:
            continue
        shared.append(SharedIdentifier(row["rel"], row["id"], int(row["subscribers"]) + 1))
        for user in users:
            shared_weight[user["id"]] += weight
            user_weight[user["id"]] = sum(weights.get(t, 0.0) for t in user["types"])
            if user.get("label") == "fraud":
                fraud_users.add(user["id"])
        for ring_id in user_rings:
            if ring_id in ring_by_id:
                joined[ring_id].append(masked(row["id"]))
    similar_to, similarity = None, 0.0
    for user_id, both in sorted(shared_weight.items()):
        union = own_weight + user_weight[user_id] - both
        value = both / union if union > 0 else 0.0
        if value > similarity:
            similar_to, similarity = user_id, value
    strongest_ring = max(joined, key=lambda r: ring_by_id[r].get("risk") or 0.0, default=None)
    facts = SubscriberFacts(
        id="prospect",
        created_at=created_at,
        ring_id=strongest_ring,
        shared=shared,
        similarity_max=similarity,
        similar_to=similar_to,
        labelled_fraud_neighbours=len(fraud_users),
    )
    scored = subscriber_graph_risk(facts, None, None, as_of=created_at, config=config)
    strengths = [scored.risk]
    reasons = list(scored.reasons)
    for ring_id in sorted(joined):
        ring = ring_by_id[ring_id]
        ring_risk = float(ring.get("risk") or 0.0)
        best = next((r for r in reason_codec.loads(ring.get("reasons")) if r.weight > 0), None)
        # A prospect is a new account: it carries the whole of the ring's risk.
        strengths.append(ring_risk)
        reasons.append(
            Reason(
                "graph.ring",
                f"would join ring {ring_id} ({ring.get('size')} subscribers, ring risk "
                f"{ring_risk:.2f}) through {', '.join(sorted(set(joined[ring_id])))}"
                + (f": {best.text}" if best else ""),
                ring_risk,
                {"ring_id": ring_id, "ring_risk": round(ring_risk, 4)},
            )
        )
    if len(joined) > 1:
        reasons.append(
            Reason(
                "graph.bridges_rings",
                f"links {len(joined)} rings: {', '.join(sorted(joined))}",
                0.0,
                {"rings": sorted(joined)},
            )
        )
    return noisy_or(strengths), ranked(reasons), matched


@router.post("/signup", response_model=SignupScore)
def score_signup(body: SignupIn, graph: Graph, settings: AppSettings, _: ReadKey) -> SignupScore:
    """Score a prospective subscriber before the account exists (read scope; nothing is
    written). Identifiers are normalised (and keyed-hashed) exactly as ingest stores them; an
    identifier that does not normalise is a 422 naming its path, e.g. `body.emails[0]`."""
    try:
        links = _preparer(settings).links(body.identifiers())
    except NormalisationError as exc:
        raise _invalid(exc) from None
    ids: dict[str, list[str]] = defaultdict(list)
    for link in links:
        ids[link.kind.value].append(link.id)
    kinds = [kind for kind in IdentifierKind if ids.get(kind.value)]
    created_at = body.created_at or datetime.now(UTC)
    # The GNN's neighbourhood read (when a model is promoted) runs beside the evidence read.
    gnn_read = _READS.submit(score_prospect, graph, links, settings.models, created_at)
    rows = graph.read(_signup_lookup(kinds), {**ids, "max_users": MAX_USERS_PER_IDENTIFIER})
    graph_risk, reasons, matched = score_signup_evidence(
        links,
        rows[0]["found"] if rows else [],
        rows[0]["rings"] if rows else [],
        created_at=created_at,
        config=settings.scoring,
    )
    components = {"graph": graph_risk}
    gnn = gnn_read.result()
    if gnn is not None:
        components["gnn"] = gnn.risk
        reasons = ranked([*reasons, gnn.reason])
    risk = rule_merge(components)
    return SignupScore(
        risk=risk,
        priority=priority(risk, settings.scoring).value,
        decision=decision(risk, settings.scoring).value,
        components=components,
        reasons=[ReasonOut(**reason.to_dict()) for reason in reasons],
        identifiers=len(links),
        matched=matched,
    )


# --- transaction --------------------------------------------------------------------------------

TransactionKind = Literal["data_usage", "call", "sms", "topup", "payment", "transfer"]


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
    country: CountryCode | None = Field(default=None, description="ISO 3166-1 alpha-2.")


class CounterpartyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["merchant", "number", "subscriber"]
    id: Id


class TransactionIn(BaseModel):
    """A transaction about to happen, shaped like the transaction events."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    subscriber_id: Id
    kind: TransactionKind
    amount: float | None = Field(default=None, ge=0, le=999_999_999_999, allow_inf_nan=False)
    currency: CurrencyCode | None = Field(default=None, description="ISO 4217; with amount.")
    ts: AwareDatetime | None = Field(default=None, description="When (default: now).")
    device: RawIdentifier | None = None
    ip: RawIdentifier | None = None
    location: LocationIn | None = None
    counterparty: CounterpartyIn | None = None

    @model_validator(mode="after")
    def _money(self) -> Self:
        if self.amount is not None and self.currency is None:
            raise ValueError("currency is required with amount")
        if self.kind in ("topup", "payment", "transfer") and self.amount is None:
            raise ValueError(f"a {self.kind} needs an amount")
        return self


class TransactionScore(BaseModel):
    subscriber_id: str
    risk: float
    priority: str
    decision: str
    components: dict[str, float] = Field(description="usage (with this transaction), graph, gnn.")
    reasons: list[ReasonOut]
    as_of: datetime


_TRANSACTION_FACTS: LiteralString = """
MATCH (s:Subscriber {id: $sid})
CALL (s) {
  OPTIONAL MATCH (s)-[r:USES_DEVICE]->(d:Device)
  RETURN min(r.first_seen) AS first_device,
         coalesce(max(CASE WHEN d.id = $device THEN 1 ELSE 0 END), 0) = 1 AS known_device
}
CALL (s) {
  OPTIONAL MATCH (s)-[r:USES_IP]->(i:IP)
  RETURN min(r.first_seen) AS first_ip,
         coalesce(max(CASE WHEN i.id = $ip THEN 1 ELSE 0 END), 0) = 1 AS known_ip
}
OPTIONAL CALL (s) {
  MATCH (t:Transaction)
  WHERE t.subscriber_id = s.id AND t.ts <= $ts AND t.ts >= $since AND t.lat IS NOT NULL
    AND t.lon IS NOT NULL
  RETURN t ORDER BY t.ts DESC LIMIT 1
}
RETURN s.graph_risk AS graph_risk, s.graph_reasons AS graph_reasons, s.gnn_risk AS gnn_risk,
       s.gnn_reasons AS gnn_reasons, s.label AS label, first_device, known_device, first_ip,
       known_ip, t.ts AS located_ts, t.lat AS lat, t.lon AS lon, t.country AS country
"""


def _money_text(amount: float) -> str:
    return f"${round(amount):,}" if abs(amount - round(amount)) < 0.005 else f"${amount:,.2f}"


def _native(value: Any) -> Any:
    return value.to_native() if hasattr(value, "to_native") else value


def transaction_evidence(
    body: TransactionIn,
    ts: datetime,
    facts: dict[str, Any],
    spend_before: float,
    device_id: str | None,
    ip_id: str | None,
    config: ScoringConfig,
) -> list[Reason]:
    """What this transaction adds to the 24 h before it: one reason per usage rule it trips."""
    added: list[Reason] = []
    amount = float(body.amount or 0.0) if body.kind in SPEND_KINDS else 0.0
    limit = config.daily_charge_limit
    total = spend_before + amount
    if amount > 0 and (strength := charge_strength(total, config)):
        added.append(
            Reason(
                Component.DAILY_CHARGE_LIMIT.code,
                f"charges {_money_text(total)} in 24 h with this {body.kind} of "
                f"{_money_text(amount)} (limit {_money_text(limit)})",
                round(strength, 4),
                {"spend": round(total, 2), "limit": limit, "amount": round(amount, 2),
                 "spend_before": round(spend_before, 2)},
            )
        )  # fmt: skip
    for kind, node_id, first_key, known_key, component, label in (
        ("device", device_id, "first_device", "known_device", Component.NEW_DEVICE, "device"),
        ("ip", ip_id, "first_ip", "known_ip", Component.NEW_IP, "IP"),
    ):
        first = _native(facts[first_key])
        if node_id is None or facts[known_key] or first is None:
            continue  # no identifier given, one it knows, or its first one of the kind
        if ts - first < NEW_IDENTIFIER_AFTER:
            continue
        days = (ts - first).total_seconds() / 86_400
        new = NewIdentifier(kind, node_id, ts, days, transactions_after=1, spend_after=amount)
        strength = new_identifier_strength(new, config)
        added.append(
            Reason(
                component.code,
                f"this {body.kind} comes from {label} {masked(node_id)}, never used by this "
                f"subscriber, after {days:.0f} days on other {label}s",
                round(strength, 4),
                {"id": masked(node_id), "days_before": round(days, 2), "amount": amount},
            )
        )
    if body.location is not None and facts["located_ts"] is not None:
        before = Located(
            _native(facts["located_ts"]), float(facts["lat"]), float(facts["lon"]),
            facts["country"],
        )  # fmt: skip
        now = Located(ts, body.location.lat, body.location.lon, body.location.country)
        hop: Hop | None = fastest_hop([before, now])
        if hop is not None and (strength := travel_strength(hop, config)):
            where = (
                f" from {hop.from_country} to {hop.to_country}"
                if hop.from_country and hop.to_country and hop.from_country != hop.to_country
                else ""
            )
            added.append(
                Reason(
                    Component.IMPOSSIBLE_TRAVEL.code,
                    f"impossible travel: {hop.distance_km:,.0f} km in {hop.hours:.1f} h{where} "
                    f"since the last located transaction ({hop.speed_kmh:,.0f} km/h, limit "
                    f"{config.impossible_travel_kmh:,.0f} km/h)",
                    round(strength, 4),
                    {"distance_km": round(hop.distance_km, 1), "hours": round(hop.hours, 4),
                     "speed_kmh": round(hop.speed_kmh, 1),
                     "limit_kmh": config.impossible_travel_kmh,
                     "start": hop.start.isoformat(), "end": hop.end.isoformat()},
                )
            )  # fmt: skip
    return added


@router.post("/transaction", response_model=TransactionScore)
def score_transaction(
    body: TransactionIn, graph: Graph, settings: AppSettings, _: ReadKey
) -> TransactionScore:
    """Score a transaction before it is accepted (read scope; nothing is written).

    Usage evidence of the subscriber's 24 h up to `ts` plus what this transaction adds (charges
    over the daily limit with it, a device or IP the subscriber never used, impossible travel
    from its last located transaction), merged with its stored graph and GNN risk. A subscriber
    confirmed fraud stays at 0.99 or more. 404 when the subscriber is unknown."""
    config = settings.scoring
    preparer = _preparer(settings)
    try:
        device = (
            preparer.identifier(IdentifierKind.DEVICE, body.device, "device").id
            if body.device is not None
            else None
        )
        ip = preparer.identifier(IdentifierKind.IP, body.ip, "ip").id if body.ip else None
    except NormalisationError as exc:
        raise _invalid(exc) from None
    ts = (body.ts or datetime.now(UTC)).astimezone(UTC)
    # The usage evidence (three reads) and the facts (one) are independent: read both at once.
    usage_read = _READS.submit(usage_features_for, graph, body.subscriber_id, config, ts)
    gnn_read = _READS.submit(score_subscriber, graph, body.subscriber_id, settings.models, ts)
    rows = graph.read(
        _TRANSACTION_FACTS,
        {"sid": body.subscriber_id, "device": device, "ip": ip, "ts": ts,
         "since": ts - TRAVEL_LOOKBEHIND},
    )  # fmt: skip
    features = usage_read.result()
    if not rows or features is None:
        raise not_found("subscriber", body.subscriber_id)
    facts = dict(rows[0])
    usage = score_usage(features, config)
    components = dict(usage.components)
    usage_reasons = list(usage.reasons)
    for reason in transaction_evidence(body, ts, facts, features.spend, device, ip, config):
        component = reason.code.removeprefix("usage.")
        if reason.weight > components.get(component, 0.0):
            components[component] = reason.weight
            usage_reasons = [r for r in usage_reasons if r.code != reason.code] + [reason]
    usage_risk = noisy_or(list(components.values()))
    graph_risk = float(facts["graph_risk"] or 0.0)
    # The promoted model scores the subscriber now; without one, the stored batch score stands.
    live = gnn_read.result()
    gnn_risk = live.risk if live is not None else float(facts["gnn_risk"] or 0.0)
    gnn_reasons = [live.reason] if live is not None else reason_codec.loads(facts["gnn_reasons"])
    reasons = merged_reasons(
        ranked(usage_reasons), reason_codec.loads(facts["graph_reasons"]), gnn_reasons
    )
    risk = rule_merge({"usage": usage_risk, "graph": graph_risk, "gnn": gnn_risk})
    risk = apply_label(risk, facts["label"], reasons)
    return TransactionScore(
        subscriber_id=body.subscriber_id,
        risk=risk,
        priority=priority(risk, config).value,
        decision=decision(risk, config).value,
        components={"usage": usage_risk, "graph": graph_risk, "gnn": gnn_risk},
        reasons=[ReasonOut(**reason.to_dict()) for reason in reasons],
        as_of=ts,
    )
