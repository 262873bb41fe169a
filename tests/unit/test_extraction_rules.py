"""Pure rules around extraction: which messages are worth a model call, and the user's own
name standing for the user. No services; milliseconds."""

from __future__ import annotations

import logging

import pytest

from graph.facts import Triple, alias_self, attribute_subjects
from graph.render import worth_extracting
from mnemograph.cli.logs import TurnNotices


@pytest.mark.parametrize(
    ("text", "worth"),
    [
        ("I live in Porto.", True),
        ("I moved from Porto to Valencia last week.", True),
        ("I live in Porto. Where is a good cafe?", True),
        ("Berlin", True),
        ("Where do I live?", False),
        ("Which city does my mother live in? And my dad?", False),
        ("hi", False),
        ("Thanks!", False),
        ("?", False),
    ],
)
def test_only_statements_are_worth_extracting(text: str, worth: bool) -> None:
    assert worth_extracting(text) is worth


def _t(s: str, p: str, o: str) -> Triple:
    return Triple(subject=s, predicate=p, object=o)


def test_the_users_own_name_becomes_the_user() -> None:
    said = "Hi, my name is Ada. I live in Paris."
    out = alias_self([_t("Ada", "lives_in", "Paris"), _t("I", "name", "Ada")], said)
    assert [(t.subject, t.predicate, t.object) for t in out] == [
        ("I", "lives_in", "Paris"),
        ("I", "name", "Ada"),  # the name fact itself is kept
    ]
    # A name from a (I, name, X) triple works without an introduction in the text, and
    # objects are aliased too.
    out = alias_self([_t("I", "name", "Ada"), _t("Bob", "married_to", "Ada")], "Bob and me")
    assert (out[1].subject, out[1].object) == ("Bob", "I")


def test_other_people_keep_their_names() -> None:
    triples = [_t("Ada", "lives_in", "Paris")]
    assert alias_self(triples, "My friend Ada lives in Paris. I am allergic to nuts.") == triples
    assert alias_self(triples, "I'm happy Ada moved to Paris") == triples


def test_turn_notices_report_each_failed_step_once() -> None:
    with TurnNotices() as notices:
        log = logging.getLogger("nodes.write_memory")
        log.warning("memory write skipped: %s: %s", "OutputParserException", "bad tool")
        log.warning("memory write skipped: %s: %s", "OutputParserException", "again")
        logging.getLogger("nodes.extract_knowledge").warning(
            "knowledge extraction skipped: %s", "TimeoutError"
        )
        logging.getLogger("somewhere.else").warning("not a memory step")
        lines = notices.take()
        assert lines == [
            "note: the long-term memory was not updated this turn (OutputParserException)",
            "note: the knowledge graph was not updated this turn (TimeoutError)",
        ]
        assert notices.take() == []


def test_facts_about_my_relatives_are_theirs() -> None:
    said = "My mother lives in Osaka."
    out = attribute_subjects([_t("I", "lives_in", "Osaka")], said)
    assert [(t.subject, t.object) for t in out] == [("my mother", "Osaka")]
    # Named: the name is the subject; relating the user to them by name stays the user's.
    said = "My sister Ines is a veterinarian."
    out = attribute_subjects([_t("I", "sibling_of", "Ines"), _t("I", "occupation", "vet")], said)
    assert [(t.subject, t.object) for t in out] == [("I", "Ines"), ("Ines", "vet")]
    # Two people, no "I": whose fact it is cannot be known, so it is not kept.
    two = "My son and my aunt live in Cork"
    assert attribute_subjects([_t("I", "lives_in", "Cork")], two) == []


def test_the_user_speaking_of_themselves_keeps_their_facts() -> None:
    for said in ("My wife and I live in Rome.", "My favourite food is sushi.", "Berlin"):
        triples = [_t("I", "lives_in", "Rome")]
        assert attribute_subjects(triples, said) == triples
