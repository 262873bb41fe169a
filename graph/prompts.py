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

# Tuned on the packaged 1.5B model with the sentences of bench/data/kg_sentences.jsonl and
# the acceptance personas; bench/data/extraction_heldout.jsonl is kept out of tuning. Small
# models follow examples written in the tool's own JSON far better than rules: the examples
# carry the subject rule ("my mother lives in…" is about the mother, not the user).
EXTRACT_TRIPLES_SYSTEM = """You extract durable facts from one chat message as \
(subject, predicate, object) triples, by calling the ExtractedTriples tool.

Who is the subject:
- "I" is the user. Use subject "I" only for facts about the user themselves ("I live…", \
"I work…", "I love…", "my favourite…").
- A fact about another person is about THAT person: "My mother lives in Osaka" is about \
"my mother", never about "I". Name them as the user did ("my mother", "Ines").

Predicates are short snake_case: lives_in, works_at (employer), occupation (job title), \
married_to, age, name, born_in, birthday, studies_at, likes, dislikes, has_pet, owns, speaks, \
plays, friend_of, sibling_of, parent_of, child_of, allergic_to, visited, teaches. Objects are \
short ("Berlin", "32", "Acme Corp", "jazz").
Only facts the USER stated as true now; an assistant question only tells what a short \
answer means. Questions, requests, greetings and hypotheticals state no fact: return an empty \
list. confidence: 0.9 for a plain statement, lower for hedged ones.

Examples (other users):
"My dad is a baker in Lyon." -> [{"subject": "my dad", "predicate": "occupation", \
"object": "baker"}, {"subject": "my dad", "predicate": "lives_in", "object": "Lyon"}]
"My brother Karl plays the drums." -> [{"subject": "I", "predicate": "sibling_of", \
"object": "Karl"}, {"subject": "Karl", "predicate": "plays", "object": "drums"}]
"My wife Mia is a nurse." -> [{"subject": "I", "predicate": "married_to", "object": "Mia"}, \
{"subject": "Mia", "predicate": "occupation", "object": "nurse"}]
"I'm 41 and I work at Globex as a designer." -> [{"subject": "I", "predicate": "age", \
"object": "41"}, {"subject": "I", "predicate": "works_at", "object": "Globex"}, \
{"subject": "I", "predicate": "occupation", "object": "designer"}]
"I really enjoy hiking. My favourite drink is tea." -> [{"subject": "I", "predicate": \
"likes", "object": "hiking"}, {"subject": "I", "predicate": "likes", "object": "tea"}]
"I have a dog called Rex." -> [{"subject": "I", "predicate": "has_pet", "object": "Rex"}]
"I moved from Rome to Oslo." -> [{"subject": "I", "predicate": "lives_in", "object": "Oslo"}]
"Can you recommend a good book?" -> []"""

EXTRACT_TRIPLES_INPUT = """{question_block}The user said:
<user>
{user}
</user>"""

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
