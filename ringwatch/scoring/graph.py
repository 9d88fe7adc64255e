"""Graph evidence: ring risk and a subscriber's graph risk, with reasons.

Inputs are plain features read from the graph after the analytics run (see
`ringwatch.graph.scoring_run`); nothing here talks to Neo4j.

Ring risk combines, as a noisy-OR (``1 - prod(1 - s_k)``, so independent evidence adds up and
no single weak signal dominates):

- labelled fraud among the members (the strongest evidence there is);
- a signup burst: most members opened their accounts within a few weeks of each other, and
  recently — households and offices are made of accounts years apart;
- strong shared identifiers: the same device, card, email or phone used by three or more
  accounts (an address or a card shared by a household of two to five is common and weak);
- how tightly the members are linked (density of the shared-identifier graph) and how many
  identifier types they share;
- the members' own usage risk.

A subscriber's graph risk is its ring's risk scaled by how much of the ring's evidence involves
the subscriber (a new account in a ring of old ones is suspicious in a different way from an old
account whose address a ring borrowed), its likeness to another account (weighted Jaccard over
shared identifiers), and identifiers shared with subscribers labelled fraud.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations

from ringwatch.config import ScoringConfig
from ringwatch.scoring.reasons import Reason, ranked

# Human names of the identifier relationship types.
IDENTIFIER_NAMES = {
    "USES_DEVICE": "device",
    "HAS_ADDRESS": "address",
    "PAYS_WITH": "payment method",
    "HAS_PHONE": "phone number",
    "HAS_EMAIL": "email",
    "USES_IP": "IP address",
}
STRONG_TYPES = frozenset({"USES_DEVICE", "PAYS_WITH", "HAS_EMAIL", "HAS_PHONE"})
SIGNUP_WINDOW = timedelta(days=21)


def masked(identifier: str) -> str:
    """The first characters of an identifier, enough to tell two apart, not to read one."""
    return identifier if len(identifier) <= 6 else identifier[:6] + "…"


@dataclass(frozen=True)
class SharedIdentifier:
    relationship: str
    id: str
    subscribers: int  # subscribers linked to it in the whole graph


@dataclass
class SubscriberFacts:
    """What the graph says about one subscriber."""

    id: str
    created_at: datetime | None = None
    label: str | None = None
    ring_id: str | None = None
    shared: list[SharedIdentifier] = field(default_factory=list)
    similarity_max: float = 0.0
    similar_to: str | None = None
    similarity_degree: float = 0.0
    pagerank: float = 0.0
    fraud_proximity: float = 0.0
    labelled_fraud_neighbours: int = 0  # other subscribers labelled fraud sharing an identifier
    usage_risk: float = 0.0


@dataclass
class RingFacts:
    """Aggregates of a ring's members, computed from their `SubscriberFacts`."""

    id: str
    members: list[str]
    identifier_types: dict[str, int]  # relationship type -> identifiers shared inside the ring
    shared_identifiers: int
    strong_shared: int  # strong identifiers shared by >= 3 members
    max_accounts_per_identifier: int
    density: float
    new_account_share: float
    signup_burst_share: float
    labelled_fraud: int
    labelled_legitimate: int
    mean_usage_risk: float
    top_identifier: tuple[str, str, int] | None  # (relationship, id, members sharing it)

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Scored:
    risk: float
    reasons: list[Reason]


def noisy_or(strengths: list[float]) -> float:
    remaining = 1.0
    for strength in strengths:
        if math.isnan(strength):
            continue  # a missing measurement is no evidence
        remaining *= 1.0 - min(max(strength, 0.0), 1.0)
    return 1.0 - remaining


def ring_facts(
    ring_id: str, members: list[SubscriberFacts], *, as_of: datetime, config: ScoringConfig
) -> RingFacts:
    ids = {m.id for m in members}
    users: dict[tuple[str, str], set[str]] = defaultdict(set)
    for member in members:
        for shared in member.shared:
            users[(shared.relationship, shared.id)].add(member.id)
    inside = {key: who for key, who in users.items() if len(who) >= 2}
    types = Counter(relationship for relationship, _ in inside)
    pairs: set[tuple[str, str]] = set()
    for who in inside.values():
        pairs.update(combinations(sorted(who), 2))
    possible = len(ids) * (len(ids) - 1) / 2
    created = sorted(m.created_at for m in members if m.created_at is not None)
    new_cutoff = as_of - timedelta(days=config.new_account_days)
    # Largest share of members whose signups fall within one SIGNUP_WINDOW.
    burst, start = 0, 0
    for end in range(len(created)):
        while created[end] - created[start] > SIGNUP_WINDOW:
            start += 1
        burst = max(burst, end - start + 1)
    top = max(inside.items(), key=lambda item: len(item[1]), default=None)
    return RingFacts(
        id=ring_id,
        members=sorted(ids),
        identifier_types=dict(types),
        shared_identifiers=len(inside),
        strong_shared=sum(
            1 for (rel, _), who in inside.items() if rel in STRONG_TYPES and len(who) >= 3
        ),
        max_accounts_per_identifier=max((len(who) for who in inside.values()), default=0),
        density=len(pairs) / possible if possible else 0.0,
        new_account_share=sum(1 for c in created if c >= new_cutoff) / len(members),
        signup_burst_share=burst / len(members) if len(members) >= 3 else 0.0,
        labelled_fraud=sum(1 for m in members if m.label == "fraud"),
        labelled_legitimate=sum(1 for m in members if m.label == "legitimate"),
        mean_usage_risk=sum(m.usage_risk for m in members) / len(members),
        top_identifier=(top[0][0], top[0][1], len(top[1])) if top else None,
    )


def ring_risk(ring: RingFacts) -> Scored:
    reasons = [
        Reason(
            "ring.members",
            f"{ring.size} subscribers linked by {ring.shared_identifiers} shared identifiers ("
            + ", ".join(
                f"{n} {IDENTIFIER_NAMES.get(t, t)}"
                for t, n in sorted(ring.identifier_types.items())
            )
            + ")",
            0.0,
            {"size": ring.size, "identifier_types": ring.identifier_types},
        )
    ]
    strengths: list[float] = []
    if ring.labelled_fraud:
        strength = min(1.0, 0.6 + 0.4 * ring.labelled_fraud / ring.size)
        strengths.append(strength)
        reasons.append(Reason("ring.labelled_fraud",
                              f"{ring.labelled_fraud} of {ring.size} members confirmed fraud",
                              strength, {"labelled_fraud": ring.labelled_fraud}))  # fmt: skip
    if ring.signup_burst_share >= 0.6 and ring.size >= 3:
        strength = 0.35 + 0.4 * ring.new_account_share
        strengths.append(strength)
        reasons.append(Reason(
            "ring.signup_burst",
            f"{ring.signup_burst_share:.0%} of members opened their accounts within "
            f"{SIGNUP_WINDOW.days} days of each other ({ring.new_account_share:.0%} new accounts)",
            strength,
            {"burst_share": round(ring.signup_burst_share, 3),
             "new_account_share": round(ring.new_account_share, 3)},
        ))  # fmt: skip
    if ring.strong_shared and ring.top_identifier:
        relationship, identifier, count = ring.top_identifier
        strength = min(0.6, 0.2 + 0.05 * ring.max_accounts_per_identifier)
        strengths.append(strength)
        reasons.append(Reason(
            "ring.shared_identifier",
            f"{IDENTIFIER_NAMES.get(relationship, relationship)} {masked(identifier)} used by "
            f"{count} accounts in this ring",
            strength,
            {"identifier_type": relationship, "identifier": masked(identifier), "accounts": count},
        ))  # fmt: skip
    strong_types = len(set(ring.identifier_types) & STRONG_TYPES)
    if strong_types >= 2 and ring.density >= 0.5:
        strength = 0.15 * strong_types * ring.density
        strengths.append(strength)
        reasons.append(Reason(
            "ring.dense",
            f"members share {strong_types} kinds of strong identifier; "
            f"{ring.density:.0%} of member pairs are directly linked",
            strength,
            {"strong_types": strong_types, "density": round(ring.density, 3)},
        ))  # fmt: skip
    if ring.mean_usage_risk >= 0.3:
        strengths.append(0.5 * ring.mean_usage_risk)
        reasons.append(Reason("ring.usage", f"members' mean usage risk {ring.mean_usage_risk:.2f}",
                              0.5 * ring.mean_usage_risk))  # fmt: skip
    if ring.labelled_legitimate and not ring.labelled_fraud:
        # A member confirmed legitimate is evidence against the whole cluster being a ring.
        damp = 0.5**ring.labelled_legitimate
        risk = noisy_or(strengths) * damp
        reasons.append(Reason("ring.labelled_legitimate",
                              f"{ring.labelled_legitimate} member(s) confirmed legitimate",
                              0.0, {"labelled_legitimate": ring.labelled_legitimate}))  # fmt: skip
    else:
        risk = noisy_or(strengths)
    return Scored(risk, ranked(reasons))


def subscriber_graph_risk(
    facts: SubscriberFacts,
    ring: RingFacts | None,
    ring_scored: Scored | None,
    *,
    as_of: datetime,
    config: ScoringConfig,
) -> Scored:
    reasons: list[Reason] = []
    strengths: list[float] = []
    if ring is not None and ring_scored is not None:
        own_new = facts.created_at is not None and facts.created_at >= as_of - timedelta(
            days=config.new_account_days
        )
        # An old account in a ring of new ones lent an identifier; it carries less of the risk.
        share = 1.0 if own_new or ring.new_account_share < 0.5 else 0.4
        strength = ring_scored.risk * share
        strengths.append(strength)
        best = next((r for r in ring_scored.reasons if r.weight > 0), None)
        reasons.append(Reason(
            "graph.ring",
            f"member of ring {ring.id} ({ring.size} subscribers, ring risk "
            f"{ring_scored.risk:.2f})" + (f": {best.text}" if best else ""),
            strength,
            {"ring_id": ring.id, "ring_risk": round(ring_scored.risk, 4)},
        ))  # fmt: skip
    strongest = max(
        (s for s in facts.shared if s.relationship in STRONG_TYPES),
        key=lambda s: s.subscribers,
        default=None,
    )
    if strongest is not None and strongest.subscribers >= 3:
        strength = min(0.5, 0.08 * strongest.subscribers)
        strengths.append(strength)
        ring_note = f" in ring {facts.ring_id}" if facts.ring_id else ""
        reasons.append(Reason(
            "graph.shared_identifier",
            f"shares {IDENTIFIER_NAMES.get(strongest.relationship, strongest.relationship)} "
            f"{masked(strongest.id)} with {strongest.subscribers - 1} subscribers{ring_note}",
            strength,
            {"identifier_type": strongest.relationship, "identifier": masked(strongest.id),
             "subscribers": strongest.subscribers},
        ))  # fmt: skip
    if facts.similarity_max >= 0.5 and facts.similar_to:
        strength = 0.4 * facts.similarity_max
        strengths.append(strength)
        reasons.append(Reason(
            "graph.same_person",
            f"{facts.similarity_max:.0%} of its weighted identifiers are shared with "
            f"{facts.similar_to} (likely the same person)",
            strength,
            {"similar_to": facts.similar_to, "similarity": round(facts.similarity_max, 3)},
        ))  # fmt: skip
    if facts.labelled_fraud_neighbours:
        strength = min(0.7, 0.4 + 0.1 * facts.labelled_fraud_neighbours)
        strengths.append(strength)
        reasons.append(Reason(
            "graph.near_fraud",
            f"shares identifiers with {facts.labelled_fraud_neighbours} subscriber(s) confirmed "
            "fraud",
            strength,
            {"labelled_fraud_neighbours": facts.labelled_fraud_neighbours},
        ))  # fmt: skip
    return Scored(noisy_or(strengths), ranked(reasons))
