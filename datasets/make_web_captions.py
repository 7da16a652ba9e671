#!/usr/bin/env python3
"""Generate web-style alt-text captions for the labeller benchmark (`catlip bench labels`).

No web-scale caption corpus exists offline (DATA.md), so this writes captions that look like the
alt texts of DataComp/LAION-style data: scene descriptions ("a photo of a small brown dog
sitting on the grass"), stock-photo titles, product listings with brands and sizes, keyword
lists, multi-sentence title + description + keywords, and a share of messy ones: URL-encoded
(%20 or +), HTML-tagged or with entities, with emoji, camera file names, URLs, hashtags,
non-English words and plain noise. Nouns come from a built-in list of about 300 common concrete
nouns (singular and plural, irregular plurals included), with about 100 adjectives, 50 verbs,
brands and filler words. Each caption has 3 to 40 words (counted on white space before any URL
encoding) and never contains a tab or a newline.

Deterministic: the output depends only on --seed and --count (caption i is the same for every
--count > i), using Python's random.Random (stable across CPython versions for random() and
the integer draws made through it here).

    python3 datasets/make_web_captions.py --out /tmp/web1m.txt                 # 1,000,000 lines
    python3 datasets/make_web_captions.py --count 100000 --seed 0 --out /tmp/web100k.txt

About 7 s per million captions on one core (pure Python, no dependencies).
"""

import argparse
import random
import sys
import time

NOUNS = """
dog cat horse cow sheep goat pig chicken duck goose bird eagle owl parrot penguin fish shark
whale dolphin turtle frog snake lizard spider bee butterfly ant mouse rabbit squirrel fox wolf
bear lion tiger elephant giraffe zebra monkey gorilla deer camel kangaroo koala panda crab
lobster octopus snail bat seal otter puppy kitten pony swan pigeon flamingo
car bus truck bicycle motorcycle train airplane boat ship helicopter rocket tractor taxi van
scooter skateboard wheel tire road bridge street highway station airport harbor canoe yacht
house building tower castle church temple school hospital hotel restaurant shop market
kitchen bedroom bathroom garden yard fence wall door window roof floor staircase chimney barn
table chair sofa couch bed lamp clock mirror shelf desk cabinet drawer pillow blanket curtain
carpet vase bottle cup mug glass plate bowl spoon fork knife pan pot kettle oven stove
refrigerator sink toilet bathtub shower towel soap toothbrush comb basket jar teapot
apple banana orange lemon grape strawberry cherry peach pear pineapple watermelon melon
tomato potato carrot onion garlic pepper cucumber lettuce cabbage broccoli corn bean
bread cake cookie pie pizza sandwich burger sausage cheese butter egg milk coffee tea juice
wine beer water soup salad rice pasta noodle chocolate candy honey donut muffin pancake
tree flower rose tulip sunflower grass leaf branch bush forest mountain hill valley river
lake sea ocean beach island desert cave rock stone sand cloud sky sun moon star rain snow
fire smoke storm rainbow field meadow waterfall volcano sunset sunrise garden park city village
man woman child boy girl baby person family friend teacher doctor nurse soldier farmer chef
artist musician player king queen prince princess knight pirate robot angel bride groom
face eye hand foot hair beard smile
shirt dress skirt jacket coat hat cap shoe boot sock glove scarf tie belt bag backpack
wallet watch ring necklace umbrella sunglasses mask helmet crown jeans sweater hoodie
book pen pencil paper letter envelope map newspaper magazine card ticket calendar notebook
computer laptop keyboard phone camera television radio speaker headphones microphone guitar
piano violin drum trumpet flute bell ball kite balloon doll toy puzzle dice
hammer saw screwdriver wrench drill axe shovel rake ladder rope chain key lock box bucket
barrel candle lantern flag sign arrow logo icon poster painting sculpture statue fountain
tent bench swing slide playground stadium boat dock pier lighthouse windmill
""".split()

IRREGULAR = {
    "mouse": "mice", "goose": "geese", "child": "children", "man": "men", "woman": "women",
    "person": "people", "foot": "feet", "knife": "knives", "leaf": "leaves", "wolf": "wolves",
    "sheep": "sheep", "fish": "fish", "deer": "deer", "shelf": "shelves", "potato": "potatoes",
    "tomato": "tomatoes", "volcano": "volcanoes", "scarf": "scarves", "headphones": "headphones",
    "jeans": "jeans", "sunglasses": "sunglasses", "dice": "dice", "hair": "hair", "rice": "rice",
    "corn": "corn", "milk": "milk", "water": "water", "sand": "sand", "snow": "snow",
    "family": "families", "baby": "babies", "puppy": "puppies", "pony": "ponies",
    "strawberry": "strawberries", "cherry": "cherries", "butterfly": "butterflies",
    "city": "cities", "princess": "princesses", "candy": "candies", "library": "libraries",
}


def plural(noun):
    if noun in IRREGULAR:
        return IRREGULAR[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"


ADJS = """
red blue green yellow black white brown pink purple orange grey golden silver colorful
small big large tiny huge tall short long round square old young new vintage modern antique
happy sad cute funny beautiful pretty ugly scary angry sleepy hungry lonely lovely elegant
wooden metal plastic glass leather wool cotton paper stone ceramic
wet dry hot cold warm frozen sunny rainy snowy foggy cloudy dark bright shiny dirty clean
fresh ripe sweet delicious healthy organic homemade traditional classic rustic fluffy soft
empty full open closed broken abandoned busy quiet crowded famous wild domestic little
""".split()

VERBS = """
sitting standing running walking jumping sleeping eating drinking playing holding looking
flying swimming riding driving reading writing smiling laughing waiting lying climbing
dancing singing cooking painting carrying wearing watching floating hanging resting
parked covered filled surrounded made decorated isolated
""".split()

PREPS = ["on", "in", "near", "next to", "under", "behind", "with", "at", "by", "over",
         "in front of", "on top of", "beside", "inside", "across", "along"]

INTROS = ["a photo of", "a picture of", "an image of", "close-up of", "close up of",
          "aerial view of", "a view of", "portrait of", "illustration of", "vector illustration of",
          "a drawing of", "a painting of", "stock photo of", "a cartoon of", "", "", "", ""]

DETS = ["a", "the", "a", "an old", "one", "two", "three", "some", "many", "this", "my", "our"]

BRANDS = ["Nike", "Adidas", "Apple", "Samsung", "IKEA", "LEGO", "Canon", "Sony", "Toyota",
          "Ford", "BMW", "Coca-Cola", "Pepsi", "Starbucks", "Disney", "Gucci", "Zara", "H&M",
          "Dell", "HP", "Lenovo", "Philips", "Bosch", "Levi's", "Ray-Ban", "Casio", "Nikon",
          "Puma", "Reebok", "Hello Kitty", "Marvel", "Nintendo", "KitchenAid", "Le Creuset"]

PRODUCT_TAIL = ["Free Shipping", "New", "Sale", "Best Seller", "2 Pack", "Set of 4", "Gift Idea",
                "Limited Edition", "High Quality", "Made in USA", "for Men", "for Women",
                "for Kids", "Unisex", "XL", "Size 10", "100% Cotton", "Waterproof", "(Renewed)"]

STOCK_TAIL = ["stock photo", "stock image", "royalty free image", "stock vector",
              "- stock photo", "| Shutterstock", "stock illustration", "premium photo",
              "free photo", "HD wallpaper", "wallpaper", "clipart", "png", "jpg"]

EMOJI = ["\U0001F436", "\U0001F431", "\u2764\ufe0f", "\U0001F60D", "\U0001F525", "\u2728",
         "\U0001F44D", "\U0001F389", "\U0001F308", "\U0001F33B", "\U0001F355", "\U0001F697",
         "\U0001F3E0", "\U0001F30A", "\u2600\ufe0f", "\U0001F384", "\U0001F382", "\U0001F4F7",
         "\U0001F602", "\U0001F64F", "\U0001F338", "\U0001F98B", "\U0001F34E", "\U0001F697",
         "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F44B\U0001F3FD", "\U0001F1EB\U0001F1F7"]

NOISE = ["IMG_{n}.JPG", "DSC_{n}", "DSC0{n}.jpg", "image{n}.png", "photo-{n}", "untitled",
         "Untitled-{n}", "null", "undefined", "image", "thumbnail", "{n}", "{n}x{n}",
         "http://www.example.com/img/{n}.jpg", "https://i.imgur.com/a{n}.png",
         "www.site{n}.com", "#{w}", "@{w}_{n}", "#{w} #{w2}", "©{n}", "Copyright {n}",
         "..."]

FOREIGN = ["la casa", "el perro", "le chat", "der Hund", "il gatto", "mit Blumen", "con flores",
           "sur la plage", "auf dem Tisch", "ragazza con cappello", "vestido rojo",
           "\u72d7", "\u732b\u306e\u5199\u771f", "\u0441\u043e\u0431\u0430\u043a\u0430",
           "\u0643\u0644\u0628", "\u00e9t\u00e9", "caf\u00e9", "na\u00efve art"]

TAGS = [("<b>", "</b>"), ("<i>", "</i>"), ("<strong>", "</strong>"), ("<em>", "</em>"),
        ("<span class=\"x\">", "</span>"), ("<a href=\"https://example.com/p\">", "</a>"),
        ("<p>", "</p>")]

ENTITIES = ["&amp;", "&quot;", "&#39;", "&nbsp;", "&lt;3", "&copy;"]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.rand = self.r.random

    def pick(self, seq):
        return seq[int(self.rand() * len(seq))]

    def num(self):
        return str(int(self.rand() * 9999))

    def noun_phrase(self):
        r = self.rand
        n = self.pick(NOUNS)
        if r() < 0.3:
            n = plural(n)
            det = self.pick(["two", "three", "some", "many", "the", "", "", "five", "several"])
        else:
            det = self.pick(DETS[:4]) if r() < 0.8 else ""
        adj = self.pick(ADJS) + " " if r() < 0.55 else ""
        if adj and r() < 0.2:
            adj = self.pick(ADJS) + " " + adj
        return (det + " " if det else "") + adj + n

    def scene(self):
        r = self.rand
        parts = []
        intro = self.pick(INTROS)
        if intro:
            parts.append(intro)
        parts.append(self.noun_phrase())
        if r() < 0.7:
            parts.append(self.pick(VERBS))
        parts.append(self.pick(PREPS))
        parts.append(self.noun_phrase())
        k = int(r() * r() * 5)
        for _ in range(k):
            parts.append(self.pick(["and", "with", ",", "while", "near", "under", "and"]))
            parts.append(self.noun_phrase())
            if r() < 0.3:
                parts.append(self.pick(PREPS) + " " + self.noun_phrase())
        s = " ".join(parts).replace(" ,", ",")
        if r() < 0.35:
            s = s[0].upper() + s[1:]
        if r() < 0.25:
            s += "."
        return s

    def stock(self):
        s = self.noun_phrase() + " " + self.pick(VERBS) + " " + self.pick(PREPS) + " " + self.noun_phrase()
        s = s[0].upper() + s[1:]
        if self.rand() < 0.5:
            s = " ".join(w.capitalize() for w in s.split())
        return s + " " + self.pick(STOCK_TAIL)

    def product(self):
        r = self.rand
        words = [self.pick(BRANDS)]
        for _ in range(1 + int(r() * 3)):
            words.append(self.pick(ADJS).capitalize())
        words.append(self.pick(NOUNS).capitalize())
        if r() < 0.4:
            words.append(self.pick(NOUNS).capitalize())
        s = " ".join(words)
        for _ in range(int(r() * 3)):
            s += self.pick([" - ", ", ", " | ", " "]) + self.pick(PRODUCT_TAIL)
        if r() < 0.3:
            s += " " + self.num() + self.pick(["ml", "cm", "in", "oz", "GB", " pcs"])
        return s

    def keywords(self):
        r = self.rand
        k = 3 + int(r() * r() * 25)
        items = []
        for _ in range(k):
            x = r()
            if x < 0.6:
                items.append(self.pick(NOUNS))
            elif x < 0.75:
                items.append(plural(self.pick(NOUNS)))
            elif x < 0.9:
                items.append(self.pick(ADJS) + " " + self.pick(NOUNS))
            else:
                items.append(self.pick(ADJS))
        return self.pick([", ", ", ", " ", "; ", " | "]).join(items)

    def multi(self):
        title = self.noun_phrase()
        title = " ".join(w.capitalize() for w in title.split())
        s = title + ". " + self.scene()
        if not s.endswith("."):
            s += "."
        return s + " " + self.keywords()

    def noise(self):
        r = self.rand
        parts = []
        for _ in range(1 + int(r() * 4)):
            t = self.pick(NOISE)
            parts.append(t.replace("{n}", self.num()).replace("{w}", self.pick(NOUNS))
                         .replace("{w2}", self.pick(ADJS)))
        if r() < 0.5:
            parts.insert(int(r() * len(parts)), self.noun_phrase())
        if r() < 0.3:
            parts.append(self.pick(FOREIGN))
        return " ".join(parts)

    def caption(self):
        r = self.rand
        x = r()
        if x < 0.42:
            s = self.scene()
        elif x < 0.52:
            s = self.stock()
        elif x < 0.64:
            s = self.product()
        elif x < 0.74:
            s = self.keywords()
        elif x < 0.84:
            s = self.multi()
        else:
            s = self.noise()
        words = s.split()
        if len(words) > 40:
            words = words[:40]
        while len(words) < 3:
            words += self.noun_phrase().split()
        words = words[:40]
        # decorations (applied independently, after the word count is fixed)
        y = r()
        if y < 0.05:
            s = self.pick(["%20", "+", "+", "%20"]).join(words)
            if r() < 0.3:
                s = s.replace(",", "%2C").replace("'", "%27")
        elif y < 0.10:
            room = 40 - len(words)
            i = int(r() * len(words))
            a, b = self.pick(TAGS)
            if " " in a and room < 1:
                a, b = TAGS[0]
            elif " " in a:
                room -= 1
            words[i] = a + words[i] + b
            if r() < 0.3 and room > 0:
                words.insert(int(r() * len(words)), self.pick(ENTITIES))
                room -= 1
            s = " ".join(words)
            if r() < 0.2 and room > 0:
                s = s + " <br/>"
        elif y < 0.15:
            k = min(1 + int(r() * 3), 40 - len(words))
            for _ in range(k):
                words.insert(int(r() * (len(words) + 1)), self.pick(EMOJI))
            s = " ".join(words)
        elif y < 0.17:
            s = " ".join(words).upper()
        elif y < 0.19:
            tail = self.pick(["!!!", "...", " :)", " ;-)", "??", " <3"])
            s = " ".join(words) + (tail if len(words) < 40 or tail[0] != " " else tail[1:])
        else:
            s = " ".join(words)
        return s


def main(argv=None):
    ap = argparse.ArgumentParser(description="deterministic web-style alt-text captions")
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    g = Gen(args.seed)
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        batch = []
        for _ in range(args.count):
            batch.append(g.caption())
            if len(batch) >= 10000:
                fh.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            fh.write("\n".join(batch) + "\n")
    print(f"make_web_captions: {args.count} captions to {args.out} in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
