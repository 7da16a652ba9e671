#!/usr/bin/env python3
"""Write the WordNet/labeller reference fixtures that Tests/WordNetTests check catlip against.

Run by hand (output is committed); needs the peer venv and Debian's WordNet and Unicode data:

    apt-get install -y wordnet-base wordnet-sense-index unicode-data
    /opt/catlip-peers/bin/pip install nltk==3.8.1 ftfy==6.2.0
    /opt/catlip-peers/bin/python Tests/WordNetTests/Fixtures/make_references.py

Every expected value comes from NLTK itself (3.8.1, the version corenet pins) reading Debian's
WordNet 3.0 files through Benchmarks/peers/labels_nltk.py (which copies them into
/opt/catlip-peers/nltk_data/corpora/wordnet on first use). The word and caption lists are
built here, deterministically (no randomness that depends on anything but the fixed seeds).

Files written next to this script (UTF-8, "\\n" line ends, no header line, no comments):

- ``morphy_nltk.tsv``: ``word<TAB>lemma``, lemma = ``WordNetLemmatizer().lemmatize(word)``
  (pos "n": morphy with noun.exc, the noun detachment rules, shortest candidate; the word
  unchanged when nothing is found). The word is passed AS WRITTEN (no lower-casing: NLTK's
  morphy is case-sensitive, so "Dogs" stays "Dogs"; corenet lower-cases captions before this
  step). Rows: every noun.exc entry, common nouns, sampled index.noun lemmas and their regular
  plurals, words that are their own lemma, non-words, mixed case, digits, hyphens,
  apostrophes, underscores (multi-word lemmas), non-ASCII, and a few degenerate inputs; one row
  has an EMPTY word (the line is just "\\t"), so do not trim lines before splitting.
- ``corenet_captions.tsv``: ``caption<TAB>wnids``, wnids comma-separated 8-digit zero-padded
  (``n02084071``) in order of first occurrence, empty when the caption gets no label; labels
  from labels_nltk.py's ``CorenetLabeller`` (corenet's rule; tokenised with untrained punkt
  sentence splitting + NLTKWordTokenizer, see that file). Captions contain no tab or newline
  (those appear URL-encoded, %09 and %0A, and are decoded by the clean-up). One caption is the
  empty string. The longest captions repeat a short sentence, so any truncation at a token
  boundary after the first 200 characters keeps the same labels.
- ``emoji_names.txt``: the one-word base emoji names of /usr/share/unicode/emoji/emoji-test.txt
  (Unicode 15.0): status fully-qualified; skin-tone modifiers (U+1F3FB..U+1F3FF), flags
  (regional indicators, tag sequences, subgroups country-flag and subdivision-flag) and keycaps
  (U+20E3) dropped; "one word" = no space and no hyphen. File order (CLDR order), names as
  written there (a few are capitalised: zodiac signs, "ZZZ"; one has "ñ": piñata).
"""

import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "Benchmarks", "peers"))

import labels_nltk  # noqa: E402

WORDNET_DIR = labels_nltk.DEFAULT_WORDNET_DIR
EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"

COMMON_NOUNS = """
dog cat horse cow sheep goat pig chicken duck goose bird eagle owl parrot penguin fish shark
whale dolphin turtle frog snake lizard spider bee butterfly ant mouse rat rabbit squirrel fox
wolf bear lion tiger elephant giraffe zebra monkey gorilla deer camel kangaroo koala panda
crab lobster octopus snail worm bat seal otter beaver hedgehog
car bus truck bicycle motorcycle train airplane boat ship helicopter rocket tractor taxi van
scooter skateboard wheel tire road bridge street highway station airport harbor
house building tower castle church temple school hospital hotel restaurant shop market
kitchen bedroom bathroom garden yard fence wall door window roof floor stair chimney
table chair sofa couch bed lamp clock mirror shelf desk cabinet drawer pillow blanket curtain
carpet vase bottle cup mug glass plate bowl spoon fork knife pan pot kettle oven stove
refrigerator sink toilet bathtub shower towel soap toothbrush comb brush
apple banana orange lemon grape strawberry cherry peach pear pineapple watermelon melon
tomato potato carrot onion garlic pepper cucumber lettuce cabbage broccoli corn bean pea
bread cake cookie pie pizza sandwich burger sausage cheese butter egg milk coffee tea juice
wine beer water soup salad rice pasta noodle chocolate candy honey sugar salt
tree flower rose tulip sunflower grass leaf branch bush forest mountain hill valley river
lake sea ocean beach island desert cave rock stone sand cloud sky sun moon star rain snow
ice fire smoke storm rainbow lightning wind field meadow waterfall volcano
man woman child boy girl baby person people family friend teacher doctor nurse soldier
farmer chef artist musician player king queen prince princess knight pirate robot angel
head face eye ear nose mouth tooth hand finger arm leg foot knee hair beard heart skull
shirt dress skirt jacket coat hat cap shoe boot sock glove scarf tie belt bag backpack
wallet watch ring necklace umbrella glasses sunglasses mask helmet crown
book pen pencil paper letter envelope map newspaper magazine card ticket calendar notebook
computer laptop keyboard phone camera television radio speaker headphone microphone guitar
piano violin drum trumpet flute bell ball kite balloon doll toy puzzle game dice chess
hammer saw screwdriver wrench drill axe shovel rake ladder rope chain key lock box basket
bucket barrel candle lantern flag sign arrow circle square triangle line dot pattern logo
icon button symbol letter number heart star cross shield sword gun bow arrow anchor
"""

OWN_LEMMA = """
glasses news species series bus gas pants scissors mathematics physics lens boss bass chess
dress moss canvas atlas iris octopus cactus virus bonus campus census chorus circus citrus
corpus crisis genus thesis basis axis analysis diagnosis oasis hypothesis emphasis synopsis
trousers jeans shorts pajamas tongs pliers binoculars goggles measles mumps billiards
darts dominoes checkers cards clothes thanks congratulations headquarters barracks
crossroads means works gallows innings kudos alms odds riches savings earnings outskirts
surroundings premises remains stairs suds woods arms goods lots manners pains quarters
sweets tails thermos walrus platypus hippopotamus rhinoceros asparagus hummus couscous
chaos cosmos ethos pathos pancreas iris bias alias class glass grass mass pass kiss miss
moss fuss loss toss gloss cross success process address princess actress waitress witness
business harness wilderness fortress compass
"""

IRREGULAR_EXTRA = """
mice geese children oxen criteria men women teeth feet lice people dice data phenomena
cacti fungi nuclei radii stimuli syllabi alumni indices matrices vertices appendices
analyses crises theses hypotheses diagnoses oases bases axes wolves knives leaves lives
wives halves shelves calves loaves thieves scarves hooves elves selves sheaves wharves
potatoes tomatoes heroes echoes vetoes torpedoes buffaloes mosquitoes volcanoes
memoranda curricula bacteria strata media millennia errata ova
seraphim cherubim kibbutzim beaux bureaux chateaux tableaux plateaux
fish sheep deer moose salmon trout series species aircraft spacecraft offspring
brethren kine swine
"""

REGULAR_PLURALS = """
dogs cats cars trees books apples boys girls birds houses horses churches boxes buses
kisses wishes dishes brushes foxes taxes quizzes buzzes waltzes fizzes witches watches
benches beaches matches bushes classes glasses masses passes dresses gases lenses
babies cities ladies parties puppies stories bodies candies cherries berries flies skies
keys toys days boys monkeys donkeys valleys turkeys chimneys journeys
firemen policemen snowmen gentlemen fishermen postmen chairmen businessmen sportsmen
walls roofs chiefs cliffs safes chefs proofs beliefs
photos pianos radios zoos kangaroos videos logos tattoos
t-shirts x-rays e-mails yo-yos hot_dogs ice_creams teddy_bears
attorneys_general mothers-in-law brothers-in-law sisters-in-law passers-by
lookers-on courts-martial men-of-war
"""

NON_WORDS = """
xyzzy blorfs qwertyes asdfies zzzzz foobar foobars grlmph snarfles wibbles flibbertigibbets
dogss catses churcheses buseses boxeses menmen womens childrens mices geeses oxens
ies ses xes zes ches shes men s es y ss sss ssss
qqq xxx aaaa bbbbs cies ghies phies zzies ddmen kkches llshes mmxes
"""

SPECIAL = [
    "", "a", "i", "o", "x", "is", "as", "us", "was", "has", "its", "this", "his", "yes", "bus",
    "an", "of", "the", "and", "or", "to", "in", "on", "at", "by", "with", "from", "up",
    "Dogs", "DOGS", "DoGs", "Dog", "Mice", "MICE", "Children", "Geese", "Glasses", "Axes",
    "Paris", "London", "London's", "iPhone", "iPhones", "McDonalds", "NASA", "USA", "U.S.",
    "u.s.", "u.s.a.", "e.g.", "i.e.", "etc.", "mr.", "dr.", "st.", "no.", "fig.",
    "Churches", "Boxes", "Ladies", "Cities", "Men", "Women", "Teeth", "TShirts", "T-shirts",
    "3", "03", "10", "100", "1000", "1,000", "3.5", "3d", "3-d", "3D", "4k", "1920s", "1990s",
    "1st", "2nd", "21st", "b-52", "b-52s", "f-16s", "mp3", "mp3s", "covid-19", "9/11", "24/7",
    "t-shirt", "x-ray", "e-mail", "yo-yo", "mother-in-law", "jack-o'-lantern",
    "jack-o'-lanterns", "well-known", "black-and-white", "ice-cream", "ice-creams",
    "dog's", "dogs'", "'s", "'", "''", "n't", "o'clock", "rock'n'roll", "ma'am", "don't",
    "children's", "men's", "women's", "people's", "'tis", "'em",
    "hot_dog", "hot_dogs", "ice_cream", "teddy_bear", "teddy_bears", "new_york", "polar_bears",
    "hot dog", "hot dogs", "ice cream", "_", "__", "-", "--", ".", "..", "...", ",", "!", "?",
    "#", "@", "$", "%", "&", "*", "(", ")", "[", "]", "<", ">", "``",
    "café", "cafés", "naïve", "résumé", "résumés", "straße", "über", "ñandú", "piñata",
    "piñatas", "jalapeño", "jalapeños", "crème", "façade", "façades", "señor", "señors",
    "hôtel", "ελληνικά", "собака", "собаки", "狗", "犬", "🐶", "🐶s", "dog🐶",
]

NOUN_SUBSTITUTIONS = [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
                      ("shes", "sh"), ("men", "man"), ("ies", "y")]


def words(block):
    return block.split()


def naive_plural(w):
    """A plural as a writer would form it (right or wrong), to exercise the detachment rules."""
    if w.endswith("man"):
        return w[:-3] + "men"
    if w.endswith(("s", "x", "z", "ch", "sh")):
        return w + "es"
    if len(w) > 1 and w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


def read_noun_exc():
    rows = []
    with open(os.path.join(WORDNET_DIR, "noun.exc"), encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if parts:
                rows.append(parts[0])
    return rows


def read_index_noun():
    lemmas = []
    with open(os.path.join(WORDNET_DIR, "index.noun"), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            lemmas.append(line.split(" ", 1)[0])
    return lemmas


def morphy_words():
    seen, out = set(), []

    def add(w):
        if "\t" in w or "\n" in w or w in seen:
            return
        seen.add(w)
        out.append(w)

    for w in SPECIAL:
        add(w)
    for block in (COMMON_NOUNS, OWN_LEMMA, IRREGULAR_EXTRA, REGULAR_PLURALS, NON_WORDS):
        for w in words(block):
            add(w)
    for w in words(COMMON_NOUNS):
        add(naive_plural(w))
    for w in words(COMMON_NOUNS)[:60]:
        add(w.capitalize())
        add(naive_plural(w).capitalize())
        add(naive_plural(w).upper())
    for w in read_noun_exc():  # every irregular form WordNet lists
        add(w)
    rng = random.Random(20240425)
    lemmas = read_index_noun()
    single = [w for w in lemmas if re.fullmatch(r"[a-z]+", w)]
    other = [w for w in lemmas if not re.fullmatch(r"[a-z]+", w)]  # _ - . ' digits
    for w in rng.sample(single, 500):
        add(w)
        add(naive_plural(w))
    for w in rng.sample(other, 150):
        add(w)
        add(naive_plural(w))
    # every detachment rule on its own, on lemmas that end in the rule's base
    for old, new in NOUN_SUBSTITUTIONS:
        cands = [w for w in single if new and w.endswith(new) and len(w) > len(new) + 1]
        for w in rng.sample(cands, min(25, len(cands))):
            add(w[: len(w) - len(new)] + old)
    return out


# ---------------------------------------------------------------------------------------------
HAND_CAPTIONS = [
    "An image of black dog.",
    "",
    " ",
    "dog",
    "Dog",
    "DOGS",
    "a dog",
    "dogs and cats",
    "Two dogs playing with three cats in the garden",
    "A photo of a cat sitting on a mat.",
    "mice, geese, children, oxen and criteria",
    "Two mice and a goose near some geese.",
    "Children playing with their toys",
    "The men and women of the village",
    "wolves knives leaves lives wives halves",
    "a bunch of cacti and fungi",
    "phenomena data criteria media bacteria",
    "boxes, buses, churches, dishes, quizzes, foxes",
    "babies cities ladies puppies cherries",
    "firemen and policemen and snowmen",
    "Glasses, pants, scissors and jeans on a table",
    "the news about species and series",
    "axes and bases",
    "A turtle, a dolphin, a whale and a pig.",
    "robot trumpet seal tiger crane",
    "A tiger and a crane by the lake",
    "A dog. A cat. A mouse.",
    "dog! cat? mouse...",
    "dog...cat",
    "dog.cat",
    "dogs, cats; and mice: all here",
    "(dog) [cat] {mouse} <bird>",
    "\"dog\" 'cat' ``mouse''",
    "“Smart” dog’s toy — the ‘best’ one",
    "dog's bone",
    "The dog's bowl and the cats' toys",
    "children's books and men's shoes",
    "James's car",
    "it's a dog, isn't it?",
    "I can't find the dog",
    "don't feed the bears",
    "<b>Red</b> car on the <i>road</i>",
    "<a href=\"http://example.com/dog\">dog</a> picture",
    "<p>A house</p><br/><p>with a garden</p>",
    "<img src=x alt=cat> cat",
    "a < b > c dog",
    "2 < 3 and 5 > 4 apples",
    "&lt;b&gt;bold&lt;/b&gt; horse",
    "cats &amp; dogs",
    "salt &amp; pepper",
    "dogs&nbsp;and&nbsp;cats",
    "red%20car%20on%20the%20road",
    "blue+bike+near+the+house",
    "c%2B%2B book",
    "cats%2Bdogs",
    "50%25 off shoes",
    "100% cotton shirt",
    "%3Cb%3Edog%3C%2Fb%3E",
    "dog%0Acat%0Amouse",
    "dog%09cat%09mouse",
    "%0A%0Adog on the beach%0A%0A",
    "%FF%FEdog house",
    "caf%C3%A9 table",
    "%E2%9C%93 apple",
    "%",
    "%%",
    "%zz dog",
    "https://example.com/images/dog-on-beach.jpg",
    "www.flickr.com/photos/cat",
    "IMG_1234.JPG",
    "DSC00001",
    "photo by @john_doe #dog #cute",
    "#1 fan of the team",
    "$5 pizza",
    "t-shirt with a dog",
    "T-Shirts for men",
    "x-ray of a hand",
    "my mother-in-law's house",
    "well-known black-and-white photo",
    "ice-cream cone",
    "hot dog with mustard",
    "hot_dog stand",
    "ice cream and teddy bear",
    "teddy_bear on a bed",
    "New York city at night",
    "new_york",
    "3 dogs",
    "1920s car",
    "2 x 4 wood",
    "3.5 inch floppy disk",
    "1,000 birds",
    "10:30 am train",
    "3d model of a house",
    "4k tv screen",
    "1st place trophy",
    "covid-19 mask",
    "figure 3. dog here",
    "vitamin c. orange juice",
    "u.s. army tank",
    "e.g. apples, pears",
    "mr. smith and his dog",
    "fig. 2 shows a cat",
    "dog.) cat",
    "the dog.\" cat",
    "1. dog 2. cat 3. bird",
    "a. apple b. banana",
    "🐶",
    "🐶🐱🐭",
    "🐶 dog",
    "I ❤️ NY",
    "pizza 🍕 and beer 🍺",
    "dog🐶cat",
    "👍",
    "😀😀😀 smile",
    "casa con giardino e cane",
    "Gatto nero sul tetto",
    "Une maison avec un chien",
    "Ein Hund im Garten",
    "El perro y el gato",
    "狗和猫",
    "犬と猫の写真",
    "Собака и кошка",
    "كلب وقطة",
    "Ο σκύλος",
    "cafÃ© table",
    "Ã¼ber cool",
    "donâ€™t touch the cat",
    "cafe\u0301 latte",
    "ﬁsh and chips",
    "ＤＯＧ ｃａｔ",
    "DOG CAT MOUSE",
    "Dog Cat Mouse",
    "dOg cAt",
    "İstanbul bridge",
    "   lots    of    spaces   between   dogs   ",
    "tab%09separated%09cats",
    "Dog 03 Drawn With Straight Lines. mammal, dog, animal",
    "Stop Sign. A red octagonal traffic sign. sign, traffic, road, red",
    "Flag of Italy. flag, italy, europe",
    "cartoon, clip art, clipart, vector, illustration",
    "Stock photo - A man riding a horse",
    "Vector illustration of a cute cartoon bear holding a heart",
    "Product Image: Women's Running Shoes Size 8",
    "Nike Air Max 90 sneakers",
    "Apple iPhone 12 Pro Max case",
    "Coca-Cola bottle",
    "lorem ipsum dolor sit amet",
    "asdf qwerty zxcv",
    "....",
    "---",
    "!!!",
    "?",
    "'s",
    "a",
    "the of and",
    "is as was has",
    "running jumping swimming",
    "beautiful red flowers in a green vase",
    "black and white photo of an old car",
    "close up of a bee on a sunflower",
    "aerial view of the city",
    "sunset over the ocean with palm trees",
    "a man wearing glasses and a hat",
    "a woman holding an umbrella in the rain",
    "a plate of spaghetti with tomato sauce",
    "a bowl of fruit: apples, oranges, bananas",
    "a child with a balloon at the park",
    "the kitchen of a restaurant",
    "a train on the railway bridge",
    "a boat on the river at dawn",
]

TEMPLATE_NOUNS = """
dog cat horse cow sheep pig chicken duck goose mouse bird fish turtle whale dolphin seal tiger
lion bear wolf fox rabbit deer elephant giraffe monkey crane robot trumpet guitar piano car bus
truck bicycle boat ship train airplane house tree flower rose apple banana orange pizza cake
bread cheese coffee cup bottle glass chair table bed lamp clock book pen phone camera computer
shoe hat shirt dress bag ball kite umbrella key box child man woman baby knife leaf wife
wolf half shelf foot tooth person ox criterion cactus fungus city lady puppy church box bus
""".split()

ADJS = "red blue green black white small big old young happy cute wooden golden shiny tiny".split()

TEMPLATES = [
    "a {adj} {n1} and a {adj2} {n2}",
    "{N1} with {p2}",
    "photo of {p1} near the {n2}",
    "{adj} {p1}, {p2} and {p3}",
    "the {n1}'s {n2}",
    "<b>{N1}</b> on a {n2}",
    "{n1}%20{n2}%20{n3}",
    "{n1}+{n2}+{p3}",
    "{N1}. {N2}. {n3}, {n4}",
    "close-up of a {n1}-shaped {n2}",
    "{n1}s and {n2}es",
    "{P1}!!! {n2}?",
    "\u201c{n1}\u201d by {n2}",
    "{n1} \U0001F436 {n2}",
]


def plural(w):
    irregular = {"mouse": "mice", "goose": "geese", "child": "children", "man": "men",
                 "woman": "women", "foot": "feet", "tooth": "teeth", "person": "people",
                 "ox": "oxen", "criterion": "criteria", "cactus": "cacti", "fungus": "fungi",
                 "wolf": "wolves", "knife": "knives", "leaf": "leaves", "wife": "wives",
                 "half": "halves", "shelf": "shelves", "sheep": "sheep", "fish": "fish",
                 "deer": "deer", "city": "cities", "lady": "ladies", "puppy": "puppies",
                 "baby": "babies"}
    return irregular.get(w) or naive_plural(w)


def generated_captions(count, seed=7):
    rng = random.Random(seed)
    out = []
    for i in range(count):
        t = TEMPLATES[i % len(TEMPLATES)]
        ns = [rng.choice(TEMPLATE_NOUNS) for _ in range(4)]
        fields = {
            "adj": rng.choice(ADJS), "adj2": rng.choice(ADJS),
            "n1": ns[0], "n2": ns[1], "n3": ns[2], "n4": ns[3],
            "N1": ns[0].capitalize(), "N2": ns[1].upper(),
            "p1": plural(ns[0]), "p2": plural(ns[1]), "p3": plural(ns[2]),
            "P1": plural(ns[0]).upper(),
        }
        out.append(t.format(**fields))
    return out


def long_captions():
    base = "A dog and a cat on a mat near the house. "
    varied = " ".join(
        f"the {a} {n} next to {plural(m)}" for a, n, m in zip(
            ADJS * 6, TEMPLATE_NOUNS[:90], reversed(TEMPLATE_NOUNS[:90])))
    return [
        base * 30,           # ~1.2k characters
        base * 250,          # ~10k characters
        varied,              # ~2.7k characters, many different nouns
        "dog " * 2000,       # 8k characters, one label
        "x" * 5000,          # one 5000-character token
    ]


def captions():
    caps = HAND_CAPTIONS + generated_captions(300 - len(HAND_CAPTIONS) - 5) + long_captions()
    for c in caps:
        assert "\t" not in c and "\n" not in c and "\r" not in c, c
    return caps


# ---------------------------------------------------------------------------------------------
def emoji_names(path=EMOJI_TEST):
    names, subgroup = [], ""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
                continue
            if not line.strip() or line.startswith("#"):
                continue
            cps_text, rest = line.split(";", 1)
            status, comment = rest.split("#", 1)
            if status.strip() != "fully-qualified":
                continue
            cps = [int(c, 16) for c in cps_text.split()]
            name = re.match(r"\s*\S+\s+E\d+\.\d+\s+(.*)$", comment).group(1).strip()
            if any(0x1F3FB <= c <= 0x1F3FF for c in cps):
                continue  # skin tones
            if (any(0x1F1E6 <= c <= 0x1F1FF for c in cps) or any(0xE0020 <= c <= 0xE007F for c in cps)
                    or subgroup in ("country-flag", "subdivision-flag")):
                continue  # flags
            if 0x20E3 in cps:
                continue  # keycaps
            if " " in name or "-" in name:
                continue
            names.append(name)
    return names


def main():
    wn, _ = labels_nltk.load_wordnet(labels_nltk.DEFAULT_NLTK_DATA)
    import ftfy
    import nltk
    from nltk.stem import WordNetLemmatizer

    if nltk.__version__ != "3.8.1" or ftfy.__version__ != "6.2.0":
        print(f"warning: corenet pins nltk 3.8.1 and ftfy 6.2.0; this is nltk {nltk.__version__},"
              f" ftfy {ftfy.__version__}", file=sys.stderr)

    lem = WordNetLemmatizer()
    ws = morphy_words()
    with open(os.path.join(HERE, "morphy_nltk.tsv"), "w", encoding="utf-8", newline="\n") as fh:
        for w in ws:
            fh.write(f"{w}\t{lem.lemmatize(w)}\n")
    changed = sum(1 for w in ws if lem.lemmatize(w) != w)
    print(f"morphy_nltk.tsv: {len(ws)} words, {changed} with a different lemma")

    labeller = labels_nltk.CorenetLabeller(wn)
    caps = captions()
    rows = [(c, labeller.label(c)) for c in caps]
    black_dog = dict(rows)["An image of black dog."]
    image, black, dog = (f"n{wn.synset(n).offset():08d}" for n in ("image.n.01", "black.n.01", "dog.n.01"))
    assert black_dog == [image, black, dog], black_dog
    assert (image, black, dog) == ("n05928118", "n04960277", "n02084071")
    with open(os.path.join(HERE, "corenet_captions.tsv"), "w", encoding="utf-8", newline="\n") as fh:
        for c, syn in rows:
            fh.write(f"{c}\t{','.join(syn)}\n")
    print(f"corenet_captions.tsv: {len(rows)} captions, {sum(1 for _, s in rows if s)} with labels,"
          f" {sum(len(s) for _, s in rows)} labels")

    names = emoji_names()
    with open(os.path.join(HERE, "emoji_names.txt"), "w", encoding="utf-8", newline="\n") as fh:
        fh.write("".join(n + "\n" for n in names))
    print(f"emoji_names.txt: {len(names)} names")
    for f in ("morphy_nltk.tsv", "corenet_captions.tsv", "emoji_names.txt"):
        print(f"  {f}: {os.path.getsize(os.path.join(HERE, f))} bytes")


if __name__ == "__main__":
    main()
