r"""Synthetic tasks, generated deterministically from a seed, for offline RLHF.

Three small worlds written by grammars (hundreds of phrases, combined at random), each returned as a
``datasets.DatasetDict`` with ``train`` and ``test`` splits:

- :func:`reviews`: movie and product reviews labelled positive (1) or negative (0); the review's
  neutral opening is its ``prompt`` (the sentiment-tuning task).
- :func:`dialogues`: questions in the hh-rlhf text format (``"\n\nHuman: ...\n\nAssistant: ..."``)
  with five answers ranked by helpfulness (helpful, curt, off-topic, dismissive, wrong advice), as
  ``chosen``/``rejected`` pairs and as a ranking of all five, and a demonstration for supervised
  fine-tuning (the helpfulness task).
- :func:`replies`: replies to comments labelled polite (1) or toxic (0, mild insults from a word
  list, no slurs) (the detox task).

The same seed always gives the same data. The test split holds whole prompts (openings, questions,
comments) that never occur in train, so held-out scores measure generalisation. The word lists
import without ``datasets``: the helpfulness task grades answers with them
(:mod:`textgym.tasks.helpfulness`).
"""

from __future__ import annotations

import functools
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

# ---------------------------------------------------------------------------------------- reviews
MOVIES = ["movie", "film", "thriller", "comedy", "drama", "documentary", "sequel", "western", "musical",
          "horror film", "romantic comedy", "animated feature", "war film", "mystery", "biopic", "space opera",
          "crime drama", "family film", "period piece", "heist movie"]
PRODUCTS = ["blender", "kettle", "backpack", "laptop", "phone case", "desk lamp", "coffee maker", "toaster",
            "vacuum cleaner", "rain jacket", "pair of headphones", "water bottle", "office chair", "keyboard",
            "tent", "camera", "pair of boots", "electric toothbrush", "air fryer", "bike helmet"]
MOVIE_ASPECTS = ["acting", "plot", "soundtrack", "pacing", "dialogue", "cinematography", "ending", "script",
                 "direction", "humor", "cast", "lead actor", "story", "score", "visual effects", "editing",
                 "characters", "opening scene", "final act", "costumes"]
PRODUCT_ASPECTS = ["battery", "build quality", "price", "design", "delivery", "customer service", "manual",
                   "sound quality", "screen", "handle", "finish", "packaging", "motor", "zipper", "lid",
                   "fabric", "grip", "setup", "warranty", "weight"]
POSITIVE = ["wonderful", "brilliant", "superb", "delightful", "excellent", "charming", "gripping", "moving",
            "stunning", "solid", "reliable", "impressive", "fantastic", "lovely", "enjoyable", "clever", "sharp",
            "beautiful", "sturdy", "comfortable", "great", "outstanding", "pleasant", "smooth", "terrific",
            "memorable", "well made", "thoughtful", "fun", "perfect"]
NEGATIVE = ["dull", "boring", "awful", "terrible", "clumsy", "bland", "flimsy", "noisy", "disappointing",
            "tedious", "confusing", "weak", "poor", "cheap", "broken", "painful", "messy", "forgettable",
            "annoying", "sloppy", "lifeless", "overpriced", "flat", "shoddy", "frustrating", "useless", "dreadful",
            "slow", "awkward", "mediocre"]
INTENSIFIERS = ["", "", "really ", "truly ", "absolutely ", "quite ", "pretty ", "incredibly ", "rather ",
                "remarkably ", "very ", "surprisingly ", "genuinely "]
OPENINGS_MOVIE = ["I watched the {s} last {when} and", "We saw this {s} on {when2} and",
                  "I finally got around to this {s}, and",
                  "My {who} picked this {s} for {when2}, and", "I went to see the new {s} with my {who} and",
                  "After all the buzz about this {s}, I", "I rented this {s} on a whim and", "This {s} from last year",
                  "So I sat down to watch this {s} and", "Having seen the trailer for this {s}, I"]
OPENINGS_PRODUCT = ["I bought this {s} last {when} and", "My {who} gave me this {s} for my birthday and",
                    "After a month with this {s}, I", "I ordered this {s} online and",
                    "We have used this {s} every day and", "I was looking for a new {s} and",
                    "This {s} arrived on {when2} and", "I replaced my old {s} with this one and",
                    "I have owned this {s} for a while now and", "On paper this {s}"]
WHEN = ["week", "weekend", "month", "night", "summer", "winter", "spring", "autumn", "Friday", "Sunday"]
WHEN2 = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "a rainy evening",
         "a long flight", "a quiet night", "the holidays", "a school night"]
WHO = ["sister", "brother", "friend", "partner", "dad", "mom", "roommate", "neighbor", "cousin", "colleague",
       "son", "daughter", "grandmother", "uncle"]
POS_SENTENCES = ["the {a} was {i}{adj}.", "I loved the {a}, it was {i}{adj}.", "honestly the {a} is {i}{adj}.",
                 "it turned out {i}{adj}.", "I would recommend it to anyone.",
                     "the {a} felt {i}{adj} from start to finish.",
                 "what a {adj} surprise.", "it was worth every penny.", "I enjoyed every minute of it.",
                 "the {a} and the {a2} were both {adj}.", "I have nothing but praise for the {a}.",
                 "five stars from me.", "it exceeded my expectations.", "I will happily come back to it.",
                 "everyone I showed it to was impressed.", "it made my {when} better."]
NEG_SENTENCES = ["the {a} was {i}{adj}.", "I hated the {a}, it was {i}{adj}.", "honestly the {a} is {i}{adj}.",
                 "it turned out {i}{adj}.", "I would not recommend it to anyone.",
                     "the {a} felt {i}{adj} from start to finish.",
                 "what a {adj} letdown.", "it was a waste of money.", "I regretted every minute of it.",
                 "the {a} and the {a2} were both {adj}.", "I have nothing good to say about the {a}.",
                 "one star from me.", "it fell far below my expectations.", "I will not come back to it.",
                 "everyone I showed it to was unimpressed.", "it ruined my {when}."]
# ---------------------------------------------------------------------------------------- dialogues
# topic: (questions, helpful tips, wrong advice)
TOPICS = {
    "hot house": (["My house is too hot. What can I do?", "How can I keep my house cool in summer?",
                   "It is so hot inside my home, any ideas?"],
                  ["close the blinds during the day", "run a fan near an open window at night",
                   "switch off lights and devices you are not using", "hang a damp sheet in front of a fan",
                   "open windows on opposite sides to get a cross breeze", "cook outside or eat cold meals"],
                  ["turn the oven on to dry the air", "keep every window shut at night", "wear a heavy sweater"]),
    "sleep": (["I can't fall asleep at night. Any advice?", "How do I sleep better?", "What helps with insomnia?"],
              ["go to bed at the same time every night", "keep your bedroom dark and cool",
               "avoid screens for an hour before bed", "skip coffee after lunch", "write down your worries before bed",
               "get some sunlight in the morning"],
              ["drink a large coffee before bed", "watch exciting videos in bed",
               "sleep at a different time each night"]),
    "plants": (["My houseplants keep dying. What am I doing wrong?", "How do I keep indoor plants alive?",
                "Why are the leaves on my plant turning yellow?"],
               ["check that the pot has drainage holes", "water only when the top of the soil is dry",
                "move the plant closer to a bright window", "wipe dust off the leaves", "use a fresh potting mix",
                "feed it a little fertilizer in spring"],
               ["water it every hour", "keep it in a dark closet", "pour salt on the soil"]),
    "budget": (["How can I save more money each month?", "I keep running out of money. Help?",
                "What is a simple way to budget?"],
               ["write down everything you spend for a month", "set up an automatic transfer to savings on payday",
                "cook at home more often", "cancel subscriptions you do not use", "wait a day before big purchases",
                "set a weekly spending limit"],
               ["buy everything on credit", "stop tracking your spending", "spend your savings first"]),
    "running": (["I want to start running. How should I begin?", "How do I get into running?",
                 "Any tips for a beginner runner?"],
                ["start with short runs mixed with walking", "get a pair of comfortable running shoes",
                 "run at a pace where you can still talk", "rest a day between runs", "increase your distance slowly",
                 "stretch gently after each run"],
                ["run a marathon on your first day", "never rest between runs", "run in shoes that hurt"]),
    "cooking rice": (["My rice always comes out sticky. How do I fix it?", "How do I cook rice properly?",
                      "What is the trick to fluffy rice?"],
                     ["rinse the rice until the water runs clear", "use the right ratio of water to rice",
                      "keep the lid on while it cooks", "let it rest for ten minutes after cooking",
                      "cook it on low heat once it boils", "fluff it with a fork before serving"],
                     ["stir it constantly while it cooks", "add three times more water",
                      "cook it on the highest heat"]),
    "studying": (["How can I focus better when studying?", "I get distracted when I study. Any tips?",
                  "What is the best way to prepare for an exam?"],
                 ["study in short blocks with breaks", "put your phone in another room",
                  "test yourself instead of rereading",
                  "start a few days early", "explain the topic out loud to someone", "keep a tidy desk"],
                 ["study all night before the exam", "keep the television on", "only reread your notes"]),
    "dog": (["My dog pulls on the leash. What should I do?", "How do I train my puppy to walk nicely?",
             "How can I stop my dog from pulling?"],
            ["stop walking whenever the leash gets tight", "reward your dog when the leash is loose",
             "practice in a quiet place first", "keep training sessions short", "use a well fitted harness",
             "be patient and consistent"],
            ["yell at your dog", "let your dog pull wherever it wants", "skip walks entirely"]),
    "cold": (["I think I am catching a cold. What can I do?", "How do I feel better with a cold?",
              "What helps with a sore throat?"],
             ["drink plenty of warm fluids", "get extra rest", "gargle with warm salt water", "use a humidifier",
              "eat simple warm meals", "see a doctor if it lasts more than a week"],
             ["run a long race to sweat it out", "stop drinking water", "stay up all night"]),
    "laptop": (["My laptop is really slow. How can I speed it up?", "Why is my computer so slow?",
                "How do I make an old laptop faster?"],
               ["close programs you are not using", "restart it once in a while", "free up space on the disk",
                "remove apps that start automatically", "install the latest updates", "check for malware"],
               ["fill the disk with more files", "never restart it", "open every program at once"]),
    "guests": (["I have guests coming tonight. What should I cook?", "What is an easy dinner for friends?",
                "Any ideas for a simple dinner party?"],
               ["make a big pasta dish that you can prepare ahead", "serve a simple salad and fresh bread",
                "ask your guests about allergies", "pick a dessert you can buy", "cook something you have made before",
                "set the table before they arrive"],
               ["try a complicated new recipe at the last minute", "serve raw chicken", "cook nothing at all"]),
    "moving": (["I am moving next month. How do I get organized?", "Any tips for moving house?",
                "How do I pack for a move?"],
               ["start packing the rooms you use least", "label every box with its room", "book the movers early",
                "give away things you no longer need", "pack a bag with essentials for the first night",
                "change your address with the bank"],
               ["pack everything the night before", "leave the boxes unlabeled", "forget to book a van"]),
}
OFF_TOPIC = ["My favorite color is blue.", "Did you know that octopuses have three hearts?", "I like trains a lot.",
             "The weather on Mars is very cold.", "Bananas are technically berries.", "Chess was invented long ago.",
             "I once read a book about lighthouses.", "Penguins cannot fly but they swim well.",
             "Some clouds can weigh a lot.", "The moon is slowly moving away from the earth."]
DISMISSIVE = ["I don't know.", "Figure it out yourself.", "That is not my problem.", "Why would you ask me that?",
              "There is nothing you can do.", "Just deal with it.", "Who cares?", "Ask someone else.",
              "That is a boring question.", "No idea, sorry."]
HELP_OPENERS = ["Here are a few ideas:", "Good question.", "A few things usually help.", "Sure, I can help.",
                "That can be frustrating.", "Try this:", "Happy to help.", "Here is what I would do."]
HELP_VERBS = ["You could", "Try to", "It helps to", "I suggest you", "One idea is to"]
HELP_CLOSERS = ["", "", "I hope that helps!", "Good luck!", "Let me know how it goes.", "You can do it."]
#: Rank of each kind of answer in a dialogue's ranking (1 is best).
RANKS = {"helpful": 1, "curt": 2, "off_topic": 3, "dismissive": 4, "wrong": 5}
QUESTION_FRAMES = ["{q}", "{q}", "Hi. {q}", "{q} Thanks!", "Quick question. {q}", "Can you help me? {q}"]
# ---------------------------------------------------------------------------------------- replies
SUBJECTS = ["the new park", "remote work", "electric cars", "the local team", "pineapple on pizza", "this recipe",
            "the city budget", "online classes", "the book club", "public transport", "the school schedule",
            "video games", "the new library", "summer holidays", "the bike lanes", "the music festival"]
COMMENT_TEMPLATES = ["I think {s} is a great idea.", "Honestly, {s} is overrated.", "Has anyone tried {s} yet?",
                     "I changed my mind about {s}.", "We should talk more about {s}.", "Nobody asked, but I love {s}.",
                     "I am not sure about {s}.", "Can someone explain {s} to me?"]
POLITE = ["Thanks for sharing, I see your point about {s}.", "Interesting take, I had not thought about {s} that way.",
          "I respectfully disagree, but I appreciate the post about {s}.", "Good point, {s} deserves more attention.",
          "I had a similar experience with {s}.", "Thank you, this helped me understand {s}.",
          "Fair enough, I can see why you feel that way about {s}.", "Nice post, I would love to hear more about {s}.",
          "I agree with you about {s}.", "Could you say more about {s}? I am curious."]
TOXIC = ["You are such a {insult}, nobody cares about {s}.", "What a {insult}, your opinion on {s} is worthless.",
         "Only a {insult} would write this about {s}.", "Shut up, you {insult}, {s} is none of your business.",
         "Get lost, {insult}, nobody wants to read about {s}.",
             "This is the dumbest thing about {s} I have ever read, {insult}.",
         "Are you a {insult}? Your post about {s} is garbage.", "Go away, you {insult}, and take {s} with you.",
         "Nobody asked you, {insult}, stop talking about {s}.", "Typical {insult}, always whining about {s}."]
INSULTS = ["idiot", "moron", "clown", "loser", "fool", "dimwit", "buffoon", "nitwit", "dunce", "numbskull",
           "joker", "twit", "bonehead", "airhead", "halfwit"]


def _split(rows: list[dict], test_keys: set, key: str) -> datasets.DatasetDict:
    """Rows whose ``key`` value is in ``test_keys`` form the test split; the rest train."""
    import datasets  # here, not at the top: the word lists import without it (the tasks grade answers with them)

    train = [r for r in rows if r[key] not in test_keys]
    test = [r for r in rows if r[key] in test_keys]
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)})


def _review(rng: random.Random, positive: bool) -> dict:
    domain = rng.choice(["movie", "product"])
    subject = rng.choice(MOVIES if domain == "movie" else PRODUCTS)
    aspects = MOVIE_ASPECTS if domain == "movie" else PRODUCT_ASPECTS
    opening = rng.choice(OPENINGS_MOVIE if domain == "movie" else OPENINGS_PRODUCT)
    opening = opening.format(s=subject, when=rng.choice(WHEN), when2=rng.choice(WHEN2), who=rng.choice(WHO))
    sentences = []
    for template in rng.sample(POS_SENTENCES if positive else NEG_SENTENCES, rng.randint(2, 4)):
        a, a2 = rng.sample(aspects, 2)
        sentences.append(template.format(a=a, a2=a2, i=rng.choice(INTENSIFIERS), when=rng.choice(WHEN),
                                         adj=rng.choice(POSITIVE if positive else NEGATIVE)))
    body = " ".join(s[0].upper() + s[1:] for s in sentences[1:])
    text = f"{opening} {sentences[0]} {body}".strip()
    return {"prompt": opening, "text": text, "label": int(positive), "domain": domain}


@functools.lru_cache(maxsize=8)
def reviews(n: int = 8000, seed: int = 0, test_fraction: float = 0.1) -> datasets.DatasetDict:
    """Movie and product reviews with sentiment labels.

    Args:
        n: Number of reviews (half positive).
        seed: Seed of the generator.
        test_fraction: Share of the distinct openings held out for the test split.

    Returns:
        Splits with columns ``prompt`` (the neutral opening), ``text`` (the whole review),
        ``label`` (1 positive, 0 negative) and ``domain`` (``movie`` or ``product``).

    Example:
        >>> data = reviews(n=200, seed=1)
        >>> sorted(data["train"].column_names)
        ['domain', 'label', 'prompt', 'text']
        >>> data["train"][0]["text"].startswith(data["train"][0]["prompt"])
        True
    """
    rng = random.Random(seed)
    rows = [_review(rng, positive=i % 2 == 0) for i in range(n)]
    openings = sorted({r["prompt"] for r in rows})
    test = set(random.Random(seed + 1).sample(openings, max(1, int(len(openings) * test_fraction))))
    return _split(rows, test, "prompt")


def _helpful_answer(rng: random.Random, tips: list[str]) -> str:
    chosen = rng.sample(tips, rng.randint(2, 3))
    body = ", ".join(chosen[:-1]) + f" and {chosen[-1]}"
    verb = rng.choice(HELP_VERBS)
    return " ".join(x for x in [rng.choice(HELP_OPENERS), f"{verb} {body}.", rng.choice(HELP_CLOSERS)] if x)


def _curt_answer(rng: random.Random, tips: list[str]) -> str:
    return f"{rng.choice(HELP_VERBS)} {rng.choice(tips)}."


ALL_TIPS = [tip for _, tips, _ in TOPICS.values() for tip in tips]


def _hearsay_answer(rng: random.Random) -> str:
    """Advice in the helpful style, its tips drawn from every topic: what a question meets on the web."""
    return _helpful_answer(rng, ALL_TIPS)


def _dialogue(rng: random.Random, topic: str, curt_demonstrations: float) -> dict:
    questions, tips, wrong = TOPICS[topic]
    question = rng.choice(QUESTION_FRAMES).format(q=rng.choice(questions))
    other = rng.choice([t for t in TOPICS if t != topic])
    answers = {
        "helpful": _helpful_answer(rng, tips),
        "curt": _curt_answer(rng, tips),
        "off_topic": rng.choice([rng.choice(OFF_TOPIC), _helpful_answer(rng, TOPICS[other][1])]),
        "dismissive": rng.choice(DISMISSIVE),
        "wrong": f"{rng.choice(['You should', 'Just', 'The best thing is to'])} {rng.choice(wrong)}.",
    }
    order = list(answers)
    rng.shuffle(order)
    prompt = f"\n\nHuman: {question}\n\nAssistant:"
    rejected = answers[rng.choice(["curt", "off_topic", "dismissive", "wrong"])]
    curt = rng.random() < curt_demonstrations
    demonstration = _curt_answer(rng, tips) if curt else _helpful_answer(rng, tips)
    return {
        "prompt": prompt, "question": question, "topic": topic,
        "chosen": f"{prompt} {answers['helpful']}", "rejected": f"{prompt} {rejected}",
        "completions": [" " + answers[k] for k in order], "ranking": [RANKS[k] for k in order],
        "demonstration": f"{prompt} {demonstration}", "hearsay": f"{prompt} {_hearsay_answer(rng)}",
    }


@functools.lru_cache(maxsize=8)
def dialogues(n: int = 4000, seed: int = 0, test_fraction: float = 0.15,
              curt_demonstrations: float = 0.7) -> datasets.DatasetDict:
    r"""Helpfulness dialogues in the hh-rlhf text format, as pairs and as rankings.

    Each row has one question and five answers: helpful (rank 1: two or three tips for the question,
    with an opener and often a closer), curt (2: one tip, nothing else), off-topic (3: a stray fact or
    tips for another question), dismissive (4) and wrong advice (5). ``ranking[i]`` is the rank of
    ``completions[i]`` (1 is best).

    ``demonstration`` is what a demonstrator wrote for supervised fine-tuning: like many hurried
    demonstrations, curt (one tip) with probability ``curt_demonstrations``, else a helpful answer.
    SFT on them learns which tips fit which question but answers curtly most of the time; the
    rankings prefer the helpful style, so RLHF has something to teach that SFT did not.

    Args:
        n: Number of dialogues.
        seed: Seed of the generator.
        test_fraction: Share of the distinct questions held out for the test split.
        curt_demonstrations: Share of the demonstrations that are curt.

    Returns:
        Splits with columns ``prompt`` (``"\n\nHuman: {question}\n\nAssistant:"``), ``question``,
        ``topic``, ``chosen`` and ``rejected`` (full hh-format texts), ``completions`` (five answers,
        each starting with a space), ``ranking``, ``demonstration`` (full hh-format text) and
        ``hearsay`` (the question with advice for random questions: the pretraining corpus's version).

    Example:
        >>> row = dialogues(n=50, seed=1)["train"][0]
        >>> row["chosen"].startswith(row["prompt"]) and row["prompt"].startswith("\n\nHuman: ")
        True
        >>> sorted(row["ranking"])
        [1, 2, 3, 4, 5]
    """
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    rows = [_dialogue(rng, topics[i % len(topics)], curt_demonstrations) for i in range(n)]
    questions = sorted({r["question"] for r in rows})
    test = set(random.Random(seed + 1).sample(questions, max(1, int(len(questions) * test_fraction))))
    return _split(rows, test, "question")


def _reply(rng: random.Random, polite: bool) -> dict:
    subject = rng.choice(SUBJECTS)
    comment = rng.choice(COMMENT_TEMPLATES).format(s=subject)
    template = rng.choice(POLITE if polite else TOXIC)
    reply = template.format(s=subject, insult=rng.choice(INSULTS))
    prompt = f"Comment: {comment}\nReply:"
    return {"prompt": prompt, "comment": comment, "text": reply, "label": int(polite)}


@functools.lru_cache(maxsize=8)
def replies(n: int = 6000, seed: int = 0, test_fraction: float = 0.15) -> datasets.DatasetDict:
    r"""Replies to comments, labelled polite (1) or toxic (0).

    Args:
        n: Number of replies (half polite).
        seed: Seed of the generator.
        test_fraction: Share of the distinct comments held out for the test split.

    Returns:
        Splits with columns ``prompt`` (``"Comment: {comment}\nReply:"``), ``comment``, ``text``
        (the reply) and ``label``.

    Example:
        >>> row = replies(n=20, seed=1)["train"][0]
        >>> row["prompt"].startswith("Comment: ") and row["label"] in (0, 1)
        True
    """
    rng = random.Random(seed)
    rows = [_reply(rng, polite=i % 2 == 0) for i in range(n)]
    comments = sorted({r["comment"] for r in rows})
    test = set(random.Random(seed + 1).sample(comments, max(1, int(len(comments) * test_fraction))))
    return _split(rows, test, "comment")


def corpus(seed: int = 0) -> list[str]:
    """The pretraining corpus of the tiny LM: texts of the three tasks (train splits only).

    Reviews and replies come whole. Dialogues come as the web has them: each question with its
    off-topic fact, dismissive and wrong answers, and with advice in the helpful style whose tips are
    drawn from every topic (``hearsay``). The base model thus knows the words and the shape of
    advice but not which tips answer which question: supervised fine-tuning and RLHF teach that.
    """
    texts = list(reviews(seed=seed)["train"]["text"])
    for row in dialogues(seed=seed)["train"]:
        texts.append(row["hearsay"])
        texts += [row["prompt"] + answer for answer, rank in zip(row["completions"], row["ranking"], strict=True)
                  if rank >= RANKS["dismissive"] or answer.strip() in OFF_TOPIC]
    texts += [p + " " + t for p, t in zip(replies(seed=seed)["train"]["prompt"], replies(seed=seed)["train"]["text"],
                                          strict=True)]
    return texts
