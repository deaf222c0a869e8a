"""The lexicon of the review grammar: words and phrases by polarity.

The tables are laid out by hand for reading. Changing any table changes the corpus, the tokenizer and
every built asset.
"""

from __future__ import annotations

# Polarity labels of generated reviews; the sentiment model's soft target for each.
POS, NEG, MIXED, NEUTRAL = "pos", "neg", "mixed", "neutral"
TARGET = {POS: 1.0, NEG: 0.0, MIXED: 0.5, NEUTRAL: 0.5}

# The lexicon tables are laid out by hand for reading; the formatter would put one word per line.
# fmt: off
# Film nouns are repeated so that "movie"/"film" dominate, as in real reviews.
FILMS = ("movie", "film", "movie", "film", "movie", "film", "comedy", "drama", "thriller", "sequel")
SUBJECTS_SG = (
    "plot", "story", "acting", "cast", "director", "soundtrack", "music", "ending", "dialogue", "script",
    "cinematography", "pacing", "lead actor", "lead actress", "villain", "humor", "editing", "score",
    "camera work", "final scene", "opening scene", "main character", "writing", "direction", "premise",
    "twist", "hero", "romance", "animation", "sound design",
)
SUBJECTS_PL = (
    "characters", "visuals", "special effects", "performances", "actors", "jokes", "songs",
    "action scenes", "costumes", "fight scenes", "sets", "dialogues",
)
# Nouns usable without an article after "with": "a charming film with great music".
MASS_NOUNS = (
    "acting", "music", "dialogue", "visuals", "performances", "characters", "humor", "writing",
    "direction", "action", "songs", "jokes", "special effects", "editing", "pacing",
)
ADJ = {
    POS: (
        "wonderful", "brilliant", "excellent", "amazing", "beautiful", "delightful", "superb", "charming",
        "gripping", "fantastic", "great", "moving", "stunning", "clever", "fresh", "powerful", "touching",
        "hilarious", "memorable", "impressive", "outstanding", "lovely", "funny", "smart", "thrilling",
        "perfect", "good", "enjoyable", "magnificent", "heartwarming", "terrific", "inspiring", "solid",
        "marvelous", "sharp", "witty", "engaging", "captivating", "excellent", "wonderful", "great",
    ),
    NEG: (
        "awful", "terrible", "dull", "boring", "bad", "weak", "poor", "predictable", "horrible", "clumsy",
        "flat", "lifeless", "messy", "forgettable", "painful", "tedious", "bland", "silly", "disappointing",
        "confusing", "stupid", "lazy", "annoying", "ugly", "dreadful", "pointless", "awkward", "cheap",
        "mediocre", "ridiculous", "lame", "shallow", "uninspired", "sloppy", "tiresome", "awful", "terrible",
        "boring", "bad",
    ),
    NEUTRAL: (
        "okay", "fine", "average", "decent", "ordinary", "passable", "acceptable", "typical", "standard",
        "fair", "alright", "watchable",
    ),
}
# Intensifiers carry no sentiment on their own, so the classifier has to read the adjective.
ADVERBS = ("really", "truly", "very", "quite", "so", "absolutely", "incredibly", "extremely", "genuinely",
           "remarkably", "simply", "especially", "surprisingly")
NEUTRAL_ADVERBS = ("pretty", "fairly", "mostly", "somewhat", "rather", "just")
# Verb phrases in the past tense never use "was", so they agree with singular and plural subjects.
VP = {
    POS: (
        "kept me hooked", "made me smile", "made me laugh", "moved me to tears", "held my attention",
        "blew me away", "won me over", "left me wanting more", "worked perfectly", "felt fresh",
        "stayed with me", "exceeded my expectations", "made my day", "lifted my spirits",
        "kept me on the edge of my seat", "deserved every award", "surprised me in the best way",
        "gave me chills", "stole the show", "brought the story to life",
    ),
    NEG: (
        "put me to sleep", "made no sense", "dragged on forever", "fell flat", "wasted my time",
        "bored me to tears", "left me cold", "felt cheap", "ruined the film", "went nowhere",
        "annoyed me", "made me cringe", "tested my patience", "fell apart", "felt forced", "missed the mark",
        "made me want to leave", "insulted my intelligence", "let me down", "ruined the movie",
    ),
    NEUTRAL: (
        "did its job", "got the job done", "passed the time", "felt familiar", "followed the usual formula",
        "did what it needed to do", "left no strong impression", "had its moments",
    ),
}
FILM_VERBS = {
    POS: ("loved", "enjoyed", "adored", "liked", "really liked", "absolutely loved", "admired",
          "was impressed by", "fell in love with", "had a great time watching", "really enjoyed"),
    NEG: ("hated", "disliked", "regretted watching", "could not stand", "was disappointed by",
          "was bored by", "gave up on", "could not finish", "really hated", "did not enjoy"),
    NEUTRAL: ("had mixed feelings about", "did not mind", "was fine with", "have no strong feelings about"),
}
FEELINGS = {
    POS: ("I smiled", "I laughed", "I was hooked", "I was grinning", "I was glued to the screen",
          "I was entertained", "I had fun", "I was captivated"),
    NEG: ("I was bored", "I was checking my watch", "I was annoyed", "I kept yawning", "I was cringing",
          "I was falling asleep", "I was frustrated", "I wanted to leave"),
}
DURATIONS = ("the whole time", "from start to finish", "all the way through", "for two hours", "throughout")
RECOMMEND = {
    POS: ("I would recommend this {film}{to}.", "I would highly recommend this {film}{to}.",
          "I will definitely watch it again.", "I would happily watch it again.", "Do not miss this {film}.",
          "Go see it.", "I cannot wait to watch it again.", "It is worth every minute."),
    NEG: ("I would not recommend this {film}{to}.", "I will never watch it again.",
          "Do not waste your money on this {film}.", "Skip this one.", "I want those two hours back.",
          "It is not worth your time.", "I walked out halfway through."),
}
TO_WHOM = ("", " to anyone", " to my friends", " to everyone", " to all my friends", " to families")
WHEN = ("last night", "yesterday", "last weekend", "with my family", "on a plane", "at the cinema", "twice",
        "on Friday", "this weekend", "with friends")
COMPANIONS = ("my friends", "my family", "my wife", "my husband", "my kids", "my brother", "my sister",
              "my parents", "a friend", "my girlfriend", "my boyfriend")
INTROS = ("I watched this {film} {when}", "I saw this {film} {when}", "I went to see this {film} with {comp}",
          "We watched this {film} {when}", "I rented this {film} {when}", "I finally watched this {film}")
OPINIONS = ("I think ", "I thought ", "In my opinion, ", "Honestly, ", "To be honest, ", "I have to say ",
            "I must say ", "Overall, ")
CONNECTORS = {
    POS: ("Also, ", "Plus, ", "On top of that, ", "Overall, ", "In the end, ", "Best of all, ", ""),
    NEG: ("Also, ", "Worse, ", "Sadly, ", "On top of that, ", "Overall, ", "In the end, ", ""),
    MIXED: ("However, ", "But ", "Still, ", "On the other hand, ", "Sadly, ", "Luckily, "),
    NEUTRAL: ("Overall, ", "In the end, ", "Also, ", ""),
}
EVER = ("", " in years", " this year", " in a long time", " lately", " in my life")

# Word-level synonyms for paraphrased references of the copy task.
SYNONYMS = {
    "movie": "film", "film": "movie", "wonderful": "great", "great": "excellent", "excellent": "superb",
    "brilliant": "excellent", "amazing": "fantastic", "fantastic": "amazing", "funny": "hilarious",
    "beautiful": "lovely", "awful": "terrible", "terrible": "awful", "boring": "dull", "dull": "boring",
    "bad": "poor", "stupid": "silly", "really": "truly", "truly": "really", "very": "extremely",
    "loved": "adored", "hated": "disliked", "enjoyed": "liked", "music": "soundtrack", "story": "plot",
    "plot": "story", "horrible": "dreadful", "clever": "smart",
}
# fmt: on
