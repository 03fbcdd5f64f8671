"""Sentences for the synthetic speech set (`training.synth_speech`): per-language templates filled from word lists.

Each language has about twenty everyday templates (errands, travel, weather, meetings, shopping) and slot lists of
names, objects, places, destinations and times, written so that the filled sentences are grammatical: the slot
lists carry the articles, cases and contractions the template needs (German accusative and dative phrases, Spanish
`al`/`a la`, French `au`/`à la`), and a template whose adjective must agree with its subject takes a subject of one
gender (`NAME_M` with `ADJ_M`). Numbers are written as words, so the text is what the voice says.

A language has tens of thousands of distinct sentences (`capacity`); `sentence_pool` draws distinct ones in a
random order that depends only on the seed.
"""

from __future__ import annotations

import random
import re

_SLOT_RE = re.compile(r"\{([A-Z_]+?)(\d?)\}")

_EN = {
    "templates": [
        "{NAME} left {OBJ} {LOC}.",
        "I think I forgot {OBJ} {LOC}.",
        "Can you bring {OBJ} {DEST} {TIME}?",
        "We are going {DEST} {TIME}.",
        "{NAME} is {ADJ} {NOW}.",
        "Please call {NAME} {TIME}.",
        "The weather will be {WEATHER} {TIME}.",
        "I need {NUM} {PLURAL} for {NAME}.",
        "Where did {NAME} put {OBJ}?",
        "{NAME} and {NAME2} met {LOC} {PAST}.",
        "Do you want to go {DEST} with {NAME}?",
        "There are {NUM} {PLURAL} {LOC}.",
        "Let's meet {LOC} {TIME}.",
        "{NAME} bought {OBJ} {PAST}.",
        "How much does {OBJ} cost?",
        "Is {OBJ} still {LOC}?",
        "Thank you for your help, {NAME}!",
        "My meeting starts {TIME}.",
        "{NAME} always takes the bus {DEST}.",
        "Sorry, I can't find {OBJ}.",
    ],
    "NAME": ["Anna", "David", "Maria", "James", "Sarah", "Michael", "Emily", "Robert", "Laura", "Thomas", "Olivia",
             "Daniel", "Sophie", "Peter", "Rachel", "Kevin", "Julia", "Mark", "Helen", "Brian"],
    "OBJ": ["the key", "my wallet", "the ticket", "your umbrella", "the red bag", "a new phone", "the old map",
            "her passport", "the blue jacket", "the fresh bread", "the morning paper", "a cup of coffee",
            "his laptop", "the small box", "a bottle of water", "the green book", "a warm coat", "the suitcase",
            "the notebook", "the camera"],
    "LOC": ["in the kitchen", "at the station", "on the train", "at the office", "in the garden", "near the bank",
            "at the airport", "in the car", "at home", "by the window", "in the hotel", "at the market",
            "on the bus", "in the library", "at school"],
    "DEST": ["to the station", "to the market", "to the airport", "to the office", "to the beach",
             "to the hospital", "to the museum", "to the city center", "to the park", "to the bakery", "home",
             "to the library", "to the hotel", "to the bank", "to the cinema"],
    "TIME": ["tomorrow morning", "this evening", "on Monday", "on Friday night", "next week", "at noon",
             "after lunch", "before dinner", "in ten minutes", "at the weekend", "later today", "on Sunday"],
    "PAST": ["yesterday", "last night", "this morning", "last Monday", "last week", "an hour ago", "on Saturday",
             "two days ago"],
    "NOW": ["today", "right now", "this evening", "again"],
    "ADJ": ["very tired", "ready", "quite happy", "still busy", "really hungry", "not sure", "a bit sick",
            "very calm", "surprised"],
    "NUM": ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty"],
    "PLURAL": ["tickets", "apples", "chairs", "books", "rooms", "boxes", "bottles", "minutes", "friends",
               "letters"],
    "WEATHER": ["sunny", "cold", "rainy", "windy", "warm", "cloudy", "hot", "foggy"],
}

_ES = {
    "templates": [
        "{NAME} dejó {OBJ} {LOC}.",
        "Creo que olvidé {OBJ} {LOC}.",
        "¿Puedes llevar {OBJ} {DEST} {TIME}?",
        "Vamos {DEST} {TIME}.",
        "{NAME_M} está muy {ADJ_M} {NOW}.",
        "{NAME_F} está muy {ADJ_F} {NOW}.",
        "Por favor, llama a {NAME} {TIME}.",
        "{TIME} {WEATHER}.",
        "Necesito {NUM} {PLURAL} para {NAME}.",
        "¿Dónde puso {NAME} {OBJ}?",
        "{NAME} y {NAME2} se vieron {LOC} {PAST}.",
        "¿Quieres ir {DEST} con {NAME}?",
        "Hay {NUM} {PLURAL} {LOC}.",
        "Nos vemos {LOC} {TIME}.",
        "{NAME} compró {OBJ} {PAST}.",
        "¿Cuánto cuesta {OBJ}?",
        "¿Sigue {OBJ} {LOC}?",
        "¡Gracias por tu ayuda, {NAME}!",
        "Mi reunión empieza {TIME}.",
        "{NAME} siempre va {DEST} en autobús.",
        "Lo siento, no encuentro {OBJ}.",
    ],
    "NAME_M": ["Carlos", "Javier", "Pablo", "Miguel", "Diego", "Andrés", "Sergio", "Raúl", "Jorge", "Álvaro"],
    "NAME_F": ["Ana", "Lucía", "María", "Elena", "Carmen", "Sofía", "Laura", "Marta", "Isabel", "Paula"],
    "OBJ": ["la llave", "mi cartera", "el billete", "tu paraguas", "la bolsa roja", "un teléfono nuevo",
            "el mapa viejo", "su pasaporte", "la chaqueta azul", "el pan fresco", "el periódico",
            "una taza de café", "el ordenador", "la caja pequeña", "una botella de agua", "el libro verde",
            "el abrigo", "la maleta", "el cuaderno", "la cámara"],
    "LOC": ["en la cocina", "en la estación", "en el tren", "en la oficina", "en el jardín", "cerca del banco",
            "en el aeropuerto", "en el coche", "en casa", "junto a la ventana", "en el hotel", "en el mercado",
            "en el autobús", "en la biblioteca", "en el colegio"],
    "DEST": ["a la estación", "al mercado", "al aeropuerto", "a la oficina", "a la playa", "al hospital",
             "al museo", "al centro", "al parque", "a la panadería", "a casa", "a la biblioteca", "al hotel",
             "al banco", "al cine"],
    "TIME": ["mañana por la mañana", "esta tarde", "el lunes", "el viernes por la noche", "la semana que viene",
             "a mediodía", "después de comer", "antes de cenar", "dentro de diez minutos", "el fin de semana",
             "más tarde", "el domingo"],
    "PAST": ["ayer", "anoche", "esta mañana", "el lunes pasado", "la semana pasada", "hace una hora",
             "el sábado", "hace dos días"],
    "NOW": ["hoy", "ahora", "esta noche", "otra vez"],
    "ADJ_M": ["cansado", "contento", "ocupado", "preocupado", "enfermo", "tranquilo", "sorprendido", "nervioso"],
    "ADJ_F": ["cansada", "contenta", "ocupada", "preocupada", "enferma", "tranquila", "sorprendida", "nerviosa"],
    "NUM": ["dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "doce", "veinte"],
    "PLURAL": ["billetes", "manzanas", "sillas", "libros", "habitaciones", "cajas", "botellas", "minutos",
               "amigos", "cartas"],
    "WEATHER": ["hará sol", "hará frío", "lloverá", "hará viento", "hará calor", "estará nublado"],
}

_DE = {
    "templates": [
        "{NAME} hat {OBJ_AKK} {LOC} vergessen.",
        "Ich glaube, ich habe {OBJ_AKK} {LOC} liegen lassen.",
        "Kannst du {OBJ_AKK} {TIME} {DEST} bringen?",
        "Wir fahren {TIME} {DEST}.",
        "{NAME} ist {NOW} {ADJ}.",
        "Bitte ruf {NAME} {TIME} an.",
        "{TIME} wird es {WEATHER}.",
        "Ich brauche {NUM} {PLURAL} für {NAME}.",
        "Wo hat {NAME} {OBJ_AKK} hingelegt?",
        "{NAME} und {NAME2} haben sich {PAST} {LOC} getroffen.",
        "Möchtest du mit {NAME} {DEST} gehen?",
        "Es gibt {NUM} {PLURAL} {LOC}.",
        "Treffen wir uns {TIME} {LOC}?",
        "{NAME} hat {PAST} {OBJ_AKK} gekauft.",
        "Was kostet {OBJ_NOM}?",
        "Ist {OBJ_NOM} noch {LOC}?",
        "Vielen Dank für deine Hilfe, {NAME}!",
        "Meine Besprechung beginnt {TIME}.",
        "{NAME} fährt immer mit dem Bus {DEST}.",
        "Entschuldigung, ich finde {OBJ_AKK} nicht.",
    ],
    "NAME": ["Anna", "Lukas", "Marie", "Felix", "Sophie", "Jonas", "Lena", "Paul", "Laura", "Max", "Julia",
             "Tobias", "Hannah", "David", "Sarah", "Michael", "Katrin", "Stefan", "Eva", "Jan"],
    "OBJ_AKK": ["den Schlüssel", "meine Geldbörse", "die Fahrkarte", "deinen Regenschirm", "die rote Tasche",
                "das neue Handy", "die alte Karte", "seinen Ausweis", "die blaue Jacke", "das frische Brot",
                "die Zeitung", "eine Tasse Kaffee", "ihren Laptop", "die kleine Kiste", "eine Flasche Wasser",
                "das grüne Buch", "den warmen Mantel", "den Koffer", "das Heft", "die Kamera"],
    "OBJ_NOM": ["der Schlüssel", "meine Geldbörse", "die Fahrkarte", "dein Regenschirm", "die rote Tasche",
                "das neue Handy", "die alte Karte", "sein Ausweis", "die blaue Jacke", "das frische Brot",
                "die Zeitung", "der Kaffee", "ihr Laptop", "die kleine Kiste", "das Wasser", "das grüne Buch",
                "der warme Mantel", "der Koffer", "das Heft", "die Kamera"],
    "LOC": ["in der Küche", "am Bahnhof", "im Zug", "im Büro", "im Garten", "neben der Bank", "am Flughafen",
            "im Auto", "zu Hause", "am Fenster", "im Hotel", "auf dem Markt", "im Bus", "in der Bibliothek",
            "in der Schule"],
    "DEST": ["zum Bahnhof", "zum Markt", "zum Flughafen", "ins Büro", "an den Strand", "ins Krankenhaus",
             "ins Museum", "in die Stadt", "in den Park", "zur Bäckerei", "nach Hause", "in die Bibliothek",
             "ins Hotel", "zur Bank", "ins Kino"],
    "TIME": ["morgen früh", "heute Abend", "am Montag", "am Freitagabend", "nächste Woche", "um zwölf Uhr",
             "nach dem Mittagessen", "vor dem Abendessen", "in zehn Minuten", "am Wochenende", "später",
             "am Sonntag"],
    "PAST": ["gestern", "gestern Abend", "heute Morgen", "letzten Montag", "letzte Woche", "vor einer Stunde",
             "am Samstag", "vor zwei Tagen"],
    "NOW": ["heute", "jetzt", "heute Abend", "schon wieder"],
    "ADJ": ["sehr müde", "schon fertig", "ziemlich glücklich", "noch beschäftigt", "wirklich hungrig",
            "nicht sicher", "etwas krank", "ganz ruhig", "sehr überrascht"],
    "NUM": ["zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "zwölf", "zwanzig"],
    "PLURAL": ["Fahrkarten", "Äpfel", "Stühle", "Bücher", "Zimmer", "Kisten", "Flaschen", "Minuten", "Freunde",
               "Briefe"],
    "WEATHER": ["sonnig", "kalt", "regnerisch", "windig", "warm", "bewölkt", "heiß", "neblig"],
}

_FR = {
    "templates": [
        "{NAME} a laissé {OBJ} {LOC}.",
        "Je crois que j'ai oublié {OBJ} {LOC}.",
        "Peux-tu apporter {OBJ} {DEST} {TIME}?",
        "Nous allons {DEST} {TIME}.",
        "{NAME_M} est très {ADJ_M} {NOW}.",
        "{NAME_F} est très {ADJ_F} {NOW}.",
        "Appelle {NAME} {TIME}, s'il te plaît.",
        "{TIME}, {WEATHER}.",
        "J'ai besoin de {NUM} {PLURAL} pour {NAME}.",
        "Où est-ce que {NAME} a mis {OBJ}?",
        "{NAME} et {NAME2} se sont vus {LOC} {PAST}.",
        "Tu veux aller {DEST} avec {NAME}?",
        "Il y a {NUM} {PLURAL} {LOC}.",
        "On se retrouve {LOC} {TIME}.",
        "{NAME} a acheté {OBJ} {PAST}.",
        "Combien coûte {OBJ}?",
        "Est-ce que {OBJ} est encore {LOC}?",
        "Merci pour ton aide, {NAME}!",
        "Ma réunion commence {TIME}.",
        "{NAME} prend toujours le bus pour aller {DEST}.",
        "Désolé, je ne trouve pas {OBJ}.",
    ],
    "NAME_M": ["Thomas", "Nicolas", "Antoine", "Hugo", "Louis", "Pierre", "Lucas", "Julien", "Mathieu", "Paul"],
    "NAME_F": ["Julie", "Camille", "Léa", "Chloé", "Manon", "Sarah", "Émilie", "Claire", "Marie", "Inès"],
    "OBJ": ["la clé", "mon portefeuille", "le billet", "ton parapluie", "le sac rouge", "le nouveau téléphone",
            "la vieille carte", "son passeport", "la veste bleue", "le pain frais", "le journal",
            "la tasse de café", "son ordinateur", "la petite boîte", "la bouteille d'eau", "le livre vert",
            "le manteau chaud", "la valise", "le cahier", "l'appareil photo"],
    "LOC": ["dans la cuisine", "à la gare", "dans le train", "au bureau", "dans le jardin", "près de la banque",
            "à l'aéroport", "dans la voiture", "à la maison", "près de la fenêtre", "à l'hôtel", "au marché",
            "dans le bus", "à la bibliothèque", "à l'école"],
    "DEST": ["à la gare", "au marché", "à l'aéroport", "au bureau", "à la plage", "à l'hôpital", "au musée",
             "au centre-ville", "au parc", "à la boulangerie", "à la maison", "à la bibliothèque", "à l'hôtel",
             "à la banque", "au cinéma"],
    "TIME": ["demain matin", "ce soir", "lundi", "vendredi soir", "la semaine prochaine", "à midi",
             "après le déjeuner", "avant le dîner", "dans dix minutes", "ce week-end", "plus tard", "dimanche"],
    "PAST": ["hier", "hier soir", "ce matin", "lundi dernier", "la semaine dernière", "il y a une heure",
             "samedi", "il y a deux jours"],
    "NOW": ["aujourd'hui", "maintenant", "ce soir", "encore une fois"],
    "ADJ_M": ["fatigué", "prêt", "content", "occupé", "inquiet", "malade", "tranquille", "surpris"],
    "ADJ_F": ["fatiguée", "prête", "contente", "occupée", "inquiète", "malade", "tranquille", "surprise"],
    "NUM": ["deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "douze", "vingt"],
    "PLURAL": ["billets", "pommes", "chaises", "livres", "chambres", "boîtes", "bouteilles", "minutes", "amis",
               "lettres"],
    "WEATHER": ["il fera beau", "il fera froid", "il va pleuvoir", "il y aura du vent", "il fera chaud",
                "le ciel sera nuageux"],
}

# Spanish and French use NAME for templates without agreement: the union of both genders.
for _lang in (_ES, _FR):
    _lang["NAME"] = _lang["NAME_M"] + _lang["NAME_F"]

LANGUAGES: dict[str, dict[str, list[str]]] = {"en-US": _EN, "es-ES": _ES, "de-DE": _DE, "fr-FR": _FR}


def _slots(template: str) -> list[tuple[str, str]]:
    """The template's slots as (placeholder, list name): `{NAME2}` draws from NAME, distinct from `{NAME}`."""
    return [(m.group(0), m.group(1)) for m in _SLOT_RE.finditer(template)]


def _capitalize_first(text: str) -> str:
    """Upper-case the first letter (after any opening ¿ or ¡), leaving the rest as written."""
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[:i] + ch.upper() + text[i + 1:]
    return text


def fill(template: str, words: dict[str, list[str]], rng: random.Random) -> str:
    """One sentence from `template`: each slot a random entry of its list, repeated lists without repeats."""
    used: dict[str, set[str]] = {}
    out = template
    for placeholder, name in _slots(template):
        choices = [w for w in words[name] if w not in used.get(name, set())]
        word = rng.choice(choices)
        used.setdefault(name, set()).add(word)
        out = out.replace(placeholder, word, 1)
    return _capitalize_first(out)


def capacity(locale: str) -> int:
    """How many distinct sentences the templates of `locale` can make (an upper bound: sums over templates)."""
    words = LANGUAGES[locale]
    total = 0
    for template in words["templates"]:
        n = 1
        seen: dict[str, int] = {}
        for _, name in _slots(template):
            n *= max(len(words[name]) - seen.get(name, 0), 1)
            seen[name] = seen.get(name, 0) + 1
        total += n
    return total


def sentence_pool(locale: str, count: int, seed: int | str) -> list[str]:
    """`count` distinct sentences of `locale`, in an order that depends only on (`locale`, `count`, `seed`).

    Templates are picked uniformly, so small templates (weather, thanks) saturate early and the pool is mostly
    drawn from the large ones; past `capacity(locale)` the pool is as large as random drawing reaches.
    """
    words = LANGUAGES[locale]
    rng = random.Random(f"{seed}:{locale}:sentences")
    seen: set[str] = set()
    pool: list[str] = []
    attempts = 0
    while len(pool) < count and attempts < 50 * count + 1000:
        attempts += 1
        sentence = fill(rng.choice(words["templates"]), words, rng)
        if sentence not in seen:
            seen.add(sentence)
            pool.append(sentence)
    return pool
