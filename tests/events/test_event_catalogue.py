"""The catalogue of event types (`billfold.events.types.EVENT_TYPES`), which a webhook
endpoint's filter is checked against, holds every type the code emits: a type missing from
it could not be subscribed to. The events domain cannot import the emitters (they import
its outbox), so the catalogue is a list of its own, compared here with what they emit: their
constants, and a sweep of the source for any event type it names."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import billfold
from billfold.events.ledger_events import transfer_event_type
from billfold.events.types import EVENT_TYPE_PATTERN, EVENT_TYPES, PAYMENT_STATES
from billfold.events.webhooks import ENDPOINT_DISABLED
from billfold.identity.outbox_events import IDENTITY_EVENT_TYPES
from billfold.ledger.types import TransferFlags
from billfold.payments import events as payment_events
from billfold.payments.states import State
from billfold.risk.scoring.service import DRIFT_EVENT_TYPE

SOURCE = Path(billfold.__file__).parent
CATALOGUE = SOURCE / "events" / "types.py"
README = SOURCE.parents[1] / "README.md"
TYPE = re.compile(EVENT_TYPE_PATTERN)
TEMPLATE = re.compile(r"^com\.billfold\.[a-z_.{}]+\.v[0-9]+$")


def _source_strings() -> set[str]:
    """Every string constant of the package's source but the catalogue's own module."""
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        if path == CATALOGUE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def _dispute_types() -> set[str]:
    whats = payment_events._DISPUTE_EVENTS.values()
    return {payment_events.DISPUTE_EVENT_TYPE.format(what=what) for what in whats}


def _payment_types() -> set[str]:
    return {payment_events.PAYMENT_EVENT_TYPE.format(state=state.value) for state in State}


def _transfer_types() -> set[str]:
    flags = [int(flag) for flag in TransferFlags]
    return {
        transfer_event_type(sum(chosen))
        for size in range(len(flags) + 1)
        for chosen in itertools.combinations(flags, size)
    }


def test_every_type_a_domain_emits_is_in_the_catalogue() -> None:
    emitted = {
        *_transfer_types(),
        *_payment_types(),
        *_dispute_types(),
        *IDENTITY_EVENT_TYPES,
        ENDPOINT_DISABLED,
        DRIFT_EVENT_TYPE,
    }
    assert emitted - set(EVENT_TYPES) == set()
    assert len(emitted) == 29  # every family above counted, so none came back empty
    assert set(EVENT_TYPES) == emitted, "the catalogue names a type nothing emits"


def test_the_payment_states_are_the_payment_domains() -> None:
    assert set(PAYMENT_STATES) == {state.value for state in State}
    assert len(PAYMENT_STATES) == len(set(PAYMENT_STATES))


def test_every_event_type_the_source_names_is_in_the_catalogue() -> None:
    """A new emitter anywhere, with a type as a literal or a `{…}` template, fails here
    until its type is catalogued (and a template until the test expands it)."""
    strings = _source_strings()
    named = {text for text in strings if TYPE.fullmatch(text)}
    templates = {text for text in strings if "{" in text and TEMPLATE.fullmatch(text)}
    assert templates == {payment_events.PAYMENT_EVENT_TYPE, payment_events.DISPUTE_EVENT_TYPE}
    assert named - set(EVENT_TYPES) == set()
    assert {"com.billfold.transfer.posted.v1", ENDPOINT_DISABLED, DRIFT_EVENT_TYPE} <= named


def test_the_readme_documents_the_catalogue() -> None:
    """The types a tenant reads about are the ones a filter takes, and the other way round
    (payment types through the list of payment states)."""
    text = README.read_text()
    documented = set(re.findall(r"`(com\.billfold\.[a-z_.]+\.v[0-9]+)`", text))
    assert documented - set(EVENT_TYPES) == set()
    payment = "com.billfold.payment."
    assert {t for t in EVENT_TYPES if not t.startswith(payment)} <= documented
    paragraph = text[text.index("**Payment events**") :].split("\n\n", 1)[0]
    assert all(f"`{state}`" in paragraph for state in PAYMENT_STATES)
