"""Sentences the TTS voices speak: ten everyday topics, each written natively in eight languages.

Every language covers the same topics so a caption can say what the speaker talks about
(the English `TOPICS` gloss) without quoting foreign text. Japanese is written in kana
with the particles は/へ spelled わ/え, because espeak-ng reads kana phonetically and has
no kanji dictionary.
"""

from __future__ import annotations

# topic key -> English phrase used in captions ("... talks about {phrase}")
TOPICS = {
    "weather": "the weather",
    "train": "a delayed train",
    "soup": "cooking soup",
    "market": "shopping at a market",
    "library": "a new library",
    "football": "a football match",
    "doctor": "a doctor's appointment",
    "holiday": "summer holiday plans",
    "concert": "a concert in a church",
    "computer": "a broken computer",
}

# language label -> (espeak-ng voice, display name used in captions and tags)
LANGUAGES = {
    "english": ("en-us", "English"),
    "german": ("de", "German"),
    "french": ("fr-fr", "French"),
    "spanish": ("es", "Spanish"),
    "italian": ("it", "Italian"),
    "russian": ("ru", "Russian"),
    "hindi": ("hi", "Hindi"),
    "japanese": ("ja", "Japanese"),
}

SENTENCES = {
    "english": {
        "weather": "It has been raining all morning, but the sun should come out this afternoon.",
        "train": "The train to the coast is running twenty minutes late, so we will miss our connection.",
        "soup": "My grandmother makes the best vegetable soup, with carrots, onions and fresh bread.",
        "market": "On Saturday we bought apples, cheese and a bunch of yellow flowers at the market.",
        "library": "The new library in the city centre stays open until nine o'clock every evening.",
        "football": "Our team scored two goals in the last ten minutes and finally won the match.",
        "doctor": "Please call the doctor tomorrow morning to move your appointment to Friday.",
        "holiday": "Next summer we would like to rent a small house by a lake in the mountains.",
        "concert": "The concert in the old church starts at eight, and the tickets are almost sold out.",
        "computer": "My computer stopped working yesterday, so I wrote the whole report by hand.",
    },
    "german": {
        "weather": "Es hat den ganzen Morgen geregnet, aber heute Nachmittag soll die Sonne scheinen.",
        "train": "Der Zug an die Küste hat zwanzig Minuten Verspätung, also verpassen wir den Anschluss.",
        "soup": "Meine Großmutter kocht die beste Gemüsesuppe mit Karotten, Zwiebeln und frischem Brot.",
        "market": "Am Samstag haben wir auf dem Markt Äpfel, Käse und einen Strauß gelber Blumen gekauft.",
        "library": "Die neue Bibliothek in der Innenstadt ist jeden Abend bis neun Uhr geöffnet.",
        "football": "Unsere Mannschaft hat in den letzten zehn Minuten zwei Tore geschossen und gewonnen.",
        "doctor": "Bitte rufen Sie morgen früh beim Arzt an, um Ihren Termin auf Freitag zu verschieben.",
        "holiday": "Nächsten Sommer möchten wir ein kleines Haus an einem See in den Bergen mieten.",
        "concert": "Das Konzert in der alten Kirche beginnt um acht, und die Karten sind fast ausverkauft.",
        "computer": "Mein Computer ist gestern kaputtgegangen, deshalb habe ich den Bericht von Hand geschrieben.",
    },
    "french": {
        "weather": "Il a plu toute la matinée, mais le soleil devrait revenir cet après-midi.",
        "train": "Le train pour la côte a vingt minutes de retard, nous allons rater la correspondance.",
        "soup": "Ma grand-mère prépare la meilleure soupe de légumes, avec des carottes, des oignons et du pain frais.",
        "market": "Samedi, au marché, nous avons acheté des pommes, du fromage et un bouquet de fleurs jaunes.",
        "library": "La nouvelle bibliothèque du centre-ville reste ouverte jusqu'à neuf heures tous les soirs.",
        "football": "Notre équipe a marqué deux buts dans les dix dernières minutes et a gagné le match.",
        "doctor": "Appelez le médecin demain matin pour déplacer votre rendez-vous à vendredi.",
        "holiday": "L'été prochain, nous voudrions louer une petite maison au bord d'un lac à la montagne.",
        "concert": "Le concert dans la vieille église commence à huit heures, et il ne reste presque plus de billets.",
        "computer": "Mon ordinateur est tombé en panne hier, alors j'ai écrit tout le rapport à la main.",
    },
    "spanish": {
        "weather": "Ha llovido toda la mañana, pero esta tarde debería salir el sol.",
        "train": "El tren a la costa lleva veinte minutos de retraso, así que perderemos la conexión.",
        "soup": "Mi abuela hace la mejor sopa de verduras, con zanahorias, cebollas y pan recién hecho.",
        "market": "El sábado compramos manzanas, queso y un ramo de flores amarillas en el mercado.",
        "library": "La nueva biblioteca del centro abre todos los días hasta las nueve de la noche.",
        "football": "Nuestro equipo marcó dos goles en los últimos diez minutos y por fin ganó el partido.",
        "doctor": "Por favor, llame al médico mañana por la mañana para cambiar su cita al viernes.",
        "holiday": "El próximo verano queremos alquilar una casa pequeña junto a un lago en la montaña.",
        "concert": "El concierto en la iglesia antigua empieza a las ocho y casi no quedan entradas.",
        "computer": "Mi ordenador dejó de funcionar ayer, así que escribí todo el informe a mano.",
    },
    "italian": {
        "weather": "Ha piovuto tutta la mattina, ma oggi pomeriggio dovrebbe uscire il sole.",
        "train": "Il treno per la costa è in ritardo di venti minuti, quindi perderemo la coincidenza.",
        "soup": "Mia nonna prepara la migliore zuppa di verdure, con carote, cipolle e pane fresco.",
        "market": "Sabato al mercato abbiamo comprato mele, formaggio e un mazzo di fiori gialli.",
        "library": "La nuova biblioteca in centro resta aperta fino alle nove ogni sera.",
        "football": "La nostra squadra ha segnato due gol negli ultimi dieci minuti e ha vinto la partita.",
        "doctor": "Per favore, chiami il medico domani mattina per spostare l'appuntamento a venerdì.",
        "holiday": "La prossima estate vorremmo affittare una piccola casa vicino a un lago in montagna.",
        "concert": "Il concerto nella vecchia chiesa comincia alle otto e i biglietti sono quasi esauriti.",
        "computer": "Il mio computer si è rotto ieri, così ho scritto tutta la relazione a mano.",
    },
    "russian": {
        "weather": "Всё утро шёл дождь, но после обеда должно выглянуть солнце.",
        "train": "Поезд к морю опаздывает на двадцать минут, поэтому мы не успеем на пересадку.",
        "soup": "Моя бабушка варит самый вкусный овощной суп с морковью, луком и свежим хлебом.",
        "market": "В субботу на рынке мы купили яблоки, сыр и букет жёлтых цветов.",
        "library": "Новая библиотека в центре города работает каждый вечер до девяти часов.",
        "football": "Наша команда забила два гола в последние десять минут и выиграла матч.",
        "doctor": "Пожалуйста, позвоните врачу завтра утром, чтобы перенести приём на пятницу.",
        "holiday": "Следующим летом мы хотим снять маленький дом у озера в горах.",
        "concert": "Концерт в старой церкви начинается в восемь, и билетов почти не осталось.",
        "computer": "Вчера сломался мой компьютер, поэтому я написал весь отчёт от руки.",
    },
    "hindi": {
        "weather": "सुबह से बारिश हो रही है, लेकिन दोपहर में धूप निकलनी चाहिए।",
        "train": "समुद्र तट जाने वाली ट्रेन बीस मिनट देर से चल रही है, इसलिए हमारी अगली गाड़ी छूट जाएगी।",
        "soup": "मेरी दादी गाजर, प्याज़ और ताज़ी रोटी के साथ सबसे अच्छा सब्ज़ियों का सूप बनाती हैं।",
        "market": "शनिवार को हमने बाज़ार से सेब, पनीर और पीले फूलों का एक गुलदस्ता खरीदा।",
        "library": "शहर के बीच में नया पुस्तकालय हर शाम नौ बजे तक खुला रहता है।",
        "football": "हमारी टीम ने आखिरी दस मिनट में दो गोल किए और मैच जीत लिया।",
        "doctor": "कृपया कल सुबह डॉक्टर को फ़ोन करके अपनी मुलाकात शुक्रवार को कर लीजिए।",
        "holiday": "अगली गर्मियों में हम पहाड़ों में एक झील के किनारे छोटा सा घर किराए पर लेना चाहते हैं।",
        "concert": "पुराने गिरजाघर में संगीत कार्यक्रम आठ बजे शुरू होगा, और टिकट लगभग खत्म हो गए हैं।",
        "computer": "कल मेरा कंप्यूटर खराब हो गया, इसलिए मैंने पूरी रिपोर्ट हाथ से लिखी।",
    },
    "japanese": {
        "weather": "けさわ ずっと あめが ふって いましたが、ごごわ はれる そうです。",
        "train": "かいがんえ いく でんしゃが にじゅっぷん おくれて いるので、のりかえに まにあいません。",
        "soup": "そぼわ にんじんと たまねぎで いちばん おいしい やさいスープを つくります。",
        "market": "どようびに いちばで りんごと チーズと きいろい はなたばを かいました。",
        "library": "まちの まんなかの あたらしい としょかんわ まいばん くじまで あいて います。",
        "football": "わたしたちの チームわ さいごの じゅっぷんで にてん いれて、しあいに かちました。",
        "doctor": "あしたの あさ おいしゃさんに でんわして、よやくを きんようびに かえて ください。",
        "holiday": "らいねんの なつわ やまの みずうみの そばに ちいさな いえを かりたいです。",
        "concert": "ふるい きょうかいの コンサートわ はちじに はじまりますが、チケットわ ほとんど うりきれです。",
        "computer": "きのう パソコンが こわれたので、レポートを ぜんぶ てで かきました。",
    },
}
