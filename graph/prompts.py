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
- Only facts the USER stated as true now count. The assistant's words count only where they \
repeat what the user said; never extract the assistant's suggestions, guesses or general \
knowledge (such as which country a city is in).
- Write the user as "I". Every other person is their own subject, named as the user did \
("Ana", "my mom"): a fact about the user's mother is not a fact about "I".
- Predicates are short snake_case verbs. Prefer: lives_in, works_at (an employer), occupation \
(a job title), married_to, age (a number), name, born_in, birthday, studies_at, likes, \
dislikes, has_pet, owns, speaks, plays, friend_of, sibling_of, parent_of, child_of, \
allergic_to, visited, located_in. Others are allowed when none fits.
- Objects are short: "Berlin", "32", "Acme Corp", "jazz".
- confidence is 0 to 1: 0.9 for a plain statement, lower for hedged or joking ones.
- Likes, dislikes and preferences are facts too. A question or request ("How do I…?", \
"Can you recommend…?", "What is…?") states no fact: never turn its topic into likes. Skip \
greetings, hypotheticals and anything the user says is no longer true.
- If there is no fact, return an empty list.

Examples (not about this user):
"I'm 41 and my husband Omar is a pilot." -> (I, age, 41), (I, married_to, Omar), \
(Omar, occupation, pilot)
"My son Ravi and my grandpa live in Cork." -> (Ravi, child_of, I), (Ravi, lives_in, Cork), \
(my grandpa, lives_in, Cork)
"I'm not into reality TV." -> (I, dislikes, reality TV)
"I left Initech and now design games at Globex." -> (I, works_at, Globex), \
(I, occupation, game designer)"""

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

# --- issue 4: long-term memory extraction (nodes/write_memory.py) -------------------------
EXTRACT_MEMORIES_SYSTEM = """You maintain a long-term memory of one user. From the last \
exchange, record only what is worth remembering across conversations, in the user's own terms:
- fact: something true about the user or their life ("User's sister Ana lives in Lisbon").
- preference: a like, dislike, habit or wish ("User prefers vegetarian restaurants").
- semantic: general knowledge the user taught or asked you to keep.
Write each item as one short self-contained sentence in the third person ("User …"). \
Importance is 0-1: 0.9 for identity, health, family and lasting plans; 0.5 for ordinary facts; \
0.2 for passing details. Never record small talk, the assistant's own claims, or anything the \
user did not say. Give the ids of the messages each item comes from. Return no items when \
nothing is worth keeping."""

EXTRACT_MEMORIES_INPUT = """Messages (id: role: text):
{messages}

Return the memory items."""
