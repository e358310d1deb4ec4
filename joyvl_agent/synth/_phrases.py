"""Short everyday sentences in English, Spanish, German and French.

Pillow's built-in font draws ASCII only, so a line is shown on screen only in a language where it
is written without accents (`on_screen`); the translations keep their proper spelling.
"""

from __future__ import annotations

__all__ = ["LANGUAGES", "PHRASES", "on_screen"]

#: The languages a subtitle line can be shown in.
LANGUAGES: tuple[str, ...] = ("es", "de", "fr")

PHRASES: tuple[dict[str, str], ...] = (
    {"en": "Hello, everyone.", "es": "Hola a todos.", "de": "Hallo zusammen.",
     "fr": "Bonjour tout le monde."},
    {"en": "Where is the train station?", "es": "¿Dónde está la estación de tren?",
     "de": "Wo ist der Bahnhof?", "fr": "Où est la gare ?"},
    {"en": "Thank you very much.", "es": "Muchas gracias.", "de": "Vielen Dank.",
     "fr": "Merci beaucoup."},
    {"en": "The door is open.", "es": "La puerta está abierta.", "de": "Die Tür ist offen.",
     "fr": "La porte est ouverte."},
    {"en": "The red car is fast.", "es": "El coche rojo es rápido.",
     "de": "Das rote Auto ist schnell.", "fr": "La voiture rouge est rapide."},
    {"en": "The bread is fresh.", "es": "El pan está fresco.", "de": "Das Brot ist frisch.",
     "fr": "Le pain est frais."},
    {"en": "We are going to the beach.", "es": "Vamos a la playa.",
     "de": "Wir fahren an den Strand.", "fr": "Nous allons à la plage."},
    {"en": "My friend is reading a book.", "es": "Mi amigo lee un libro.",
     "de": "Mein Freund liest ein Buch.", "fr": "Mon ami lit un livre."},
    {"en": "The dog is sleeping.", "es": "El perro duerme.", "de": "Der Hund schläft.",
     "fr": "Le chien dort."},
    {"en": "I like chocolate.", "es": "Me gusta el chocolate.", "de": "Ich mag Schokolade.",
     "fr": "J'aime le chocolat."},
    {"en": "The city is beautiful at night.", "es": "La ciudad es bonita de noche.",
     "de": "Die Stadt ist nachts schön.", "fr": "La ville est belle la nuit."},
    {"en": "Please close the window.", "es": "Por favor, cierra la ventana.",
     "de": "Bitte mach das Fenster zu.", "fr": "Ferme la fenêtre, s'il te plaît."},
    {"en": "The train is late.", "es": "El tren llega tarde.", "de": "Der Zug hat Verspätung.",
     "fr": "Le train est en retard."},
    {"en": "I would like a glass of water.", "es": "Quisiera un vaso de agua.",
     "de": "Ich möchte ein Glas Wasser.", "fr": "Je voudrais un verre d'eau."},
    {"en": "See you tomorrow.", "es": "Hasta mañana.", "de": "Bis morgen.", "fr": "À demain."},
    {"en": "The children are playing in the garden.", "es": "Los niños juegan en el jardín.",
     "de": "Die Kinder spielen im Garten.", "fr": "Les enfants jouent dans le jardin."},
    {"en": "The house is very big.", "es": "La casa es muy grande.",
     "de": "Das Haus ist sehr groß.", "fr": "La maison est très grande."},
    {"en": "My name is Anna.", "es": "Me llamo Anna.", "de": "Ich heiße Anna.",
     "fr": "Je m'appelle Anna."},
    {"en": "We need more time.", "es": "Necesitamos más tiempo.",
     "de": "Wir brauchen mehr Zeit.", "fr": "Il nous faut plus de temps."},
    {"en": "The weather is nice today.", "es": "Hoy hace buen tiempo.",
     "de": "Das Wetter ist heute gut.", "fr": "Il fait beau aujourd'hui."},
    {"en": "The cat is on the table.", "es": "El gato está en la mesa.",
     "de": "Die Katze ist auf dem Tisch.", "fr": "Le chat est sur la table."},
    {"en": "I am hungry.", "es": "Tengo hambre.", "de": "Ich habe Hunger.", "fr": "J'ai faim."},
    {"en": "The music is too loud.", "es": "La música está demasiado alta.",
     "de": "Die Musik ist zu laut.", "fr": "La musique est trop forte."},
    {"en": "We live in a small town.", "es": "Vivimos en un pueblo pequeño.",
     "de": "Wir wohnen in einer kleinen Stadt.", "fr": "Nous habitons une petite ville."},
    {"en": "I have a red bicycle.", "es": "Tengo una bicicleta roja.",
     "de": "Ich habe ein rotes Fahrrad.", "fr": "J'ai un vélo rouge."},
    {"en": "The water is cold.", "es": "El agua está fría.", "de": "Das Wasser ist kalt.",
     "fr": "L'eau est froide."},
    {"en": "Call me tomorrow.", "es": "Llámame mañana.", "de": "Ruf mich morgen an.",
     "fr": "Appelle-moi demain."},
    {"en": "I love this city.", "es": "Me encanta esta ciudad.", "de": "Ich liebe diese Stadt.",
     "fr": "J'adore cette ville."},
    {"en": "Good night.", "es": "Buenas noches.", "de": "Gute Nacht.", "fr": "Bonne nuit."},
    {"en": "Welcome to the museum.", "es": "Bienvenidos al museo.",
     "de": "Willkommen im Museum.", "fr": "Bienvenue au musée."},
    {"en": "Today is Monday.", "es": "Hoy es lunes.", "de": "Heute ist Montag.",
     "fr": "Aujourd'hui, c'est lundi."},
    {"en": "The flowers are beautiful.", "es": "Las flores son bonitas.",
     "de": "Die Blumen sind schön.", "fr": "Les fleurs sont belles."},
    {"en": "The pizza is very good.", "es": "La pizza es muy buena.",
     "de": "Die Pizza ist sehr gut.", "fr": "La pizza est très bonne."},
    {"en": "My car is blue.", "es": "Mi coche es azul.", "de": "Mein Auto ist blau.",
     "fr": "Ma voiture est bleue."},
)


def on_screen(lang: str) -> list[dict[str, str]]:
    """The phrases whose `lang` text can be drawn with the built-in font (ASCII only)."""
    return [p for p in PHRASES if p[lang].isascii()]
