"""All prompt text in one place, so wording changes never touch control flow."""

SYSTEM_PROMPT = """You are a helpful assistant with a long-term memory of this user.
Use what you remember when it is relevant; never invent memories you were not given.
Current time: {now}."""

SUMMARY_SECTION = """
Summary of the earlier conversation:
{summary}"""

MEMORIES_SECTION = """
Things you remember about the user (most relevant first):
{memories}"""

FACTS_SECTION = """
Known facts from the user's knowledge graph:
{facts}"""

SUMMARIZE_SYSTEM = """You maintain the running summary of a conversation between a user \
and an assistant. Keep every fact, name, date, preference and open question the user \
mentioned; drop pleasantries. Write at most {max_words} words of plain prose and return only \
the updated summary."""

SUMMARIZE_INPUT = """New messages to fold in:
{transcript}

Current summary (may be empty):
{summary}"""

# --- Knowledge-graph extraction (issue 3) ----------------------------------------------------

EXTRACT_TRIPLES_SYSTEM = """You extract durable facts about the user from one chat exchange, \
as (subject, predicate, object) triples, by calling the ExtractedTriples tool.

Rules:
- Only facts the USER stated count. The assistant's words count only where they repeat what \
the user said; never extract the assistant's suggestions, guesses or general knowledge.
- Write the user as "I". Name other people, places and things as the user did.
- Predicates are short snake_case verbs. Prefer: lives_in, works_at, occupation, married_to, \
age, name, born_in, birthday, studies_at, likes, dislikes, has_pet, owns, speaks, plays, \
friend_of, sibling_of, parent_of, child_of, allergic_to, visited, located_in. Others are \
allowed when none fits.
- Objects are short: "Berlin", "32", "Acme Corp", "jazz".
- confidence is 0 to 1: 0.9 for a plain statement, lower for hedged or joking ones.
- Skip questions, hypotheticals, greetings and anything not stated as true.
- If there is no fact, return an empty list."""

EXTRACT_TRIPLES_INPUT = """{question_block}The user said:
<user>
{user}
</user>

The assistant replied (use only where it restates the user):
<assistant>
{reply}
</assistant>"""

EXTRACT_TRIPLES_QUESTION = """The assistant had asked:
<assistant_question>
{question}
</assistant_question>

"""
