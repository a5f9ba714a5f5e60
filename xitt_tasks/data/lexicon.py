"""Hand-written per-language word lists for the synthetic sample data (make_sample.py).

Each language has, in its own script: three nouns (water, house, book), one adjective (big),
one verb (sees), a negation, the word for 'where', two person names, two places and one
organisation. Words are aligned by position across languages, so a sentence rendered in two
languages is a (crude) translation: that is what the Tatoeba sample relies on. The words are
approximate and the sentences word-by-word: the data tests code, it says nothing of quality.
"""

import dataclasses

# lang: "water house book big see not where | person person | place place | org"
_RAW = {
    "af": "water huis boek groot sien nie waar | Johan Marie | Kaapstad Pretoria | Sasol",
    "ar": "ماء بيت كتاب كبير يرى لا أين | أحمد فاطمة | القاهرة دبي | أرامكو",
    "az": "su ev kitab böyük görür yox harada | Əli Leyla | Bakı Gəncə | Azercell",
    "bg": "вода къща книга голям вижда не къде | Иван Мария | София Варна | Лукойл",
    "bn": "জল বাড়ি বই বড় দেখে না কোথায় | রহিম সুমি | ঢাকা কলকাতা | গ্রামীণ",
    "de": "Wasser Haus Buch groß sieht nicht wo | Hans Anna | Berlin München | Siemens",
    "el": "νερό σπίτι βιβλίο μεγάλο βλέπει δεν πού | Γιώργος Ελένη | Αθήνα Πάτρα | Πειραιώς",
    "en": "water house book big sees never where | John Mary | London Paris | Google",
    "es": "agua casa libro grande ve no dónde | Juan Lucía | Madrid Sevilla | Telefónica",
    "et": "vesi maja raamat suur näeb ei kus | Jaan Mari | Tallinn Tartu | Skype",
    "eu": "ura etxea liburua handia ikusten ez non | Jon Miren | Bilbo Donostia | Eroski",
    "fa": "آب خانه کتاب بزرگ دید نه کجا | علی مریم | تهران شیراز | سایپا",
    "fi": "vesi talo kirja iso näkee ei missä | Matti Liisa | Helsinki Turku | Nokia",
    "fr": "eau maison livre grand voit pas où | Pierre Claire | Lyon Marseille | Renault",
    "gu": "પાણી ઘર પુસ્તક મોટું જુએ નહીં ક્યાં | રમેશ ગીતા | અમદાવાદ સુરત | અમૂલ",
    "he": "מים בית ספר גדול רואה לא איפה | דוד שרה | ירושלים חיפה | טבע",
    "hi": "पानी घर किताब बड़ा देखता नहीं कहाँ | राम सीता | दिल्ली मुंबई | इन्फोसिस",
    "ht": "dlo kay liv gwo wè pa kote | Jan Mari | Okap Jakmèl | Digicel",
    "hu": "víz ház könyv nagy lát nem hol | János Éva | Budapest Szeged | Richter",
    "id": "air rumah buku besar melihat tidak mana | Budi Siti | Jakarta Bandung | Pertamina",
    "it": "acqua casa libro grande vede non dove | Marco Giulia | Roma Milano | Fiat",
    "ja": "水 家 本 大きい 見る ない どこ | 太郎 花子 | 東京 大阪 | ソニー",
    "jv": "banyu omah buku gedhe ndeleng ora ngendi | Joko Sri | Surabaya Semarang | Garuda",
    "ka": "წყალი სახლი წიგნი დიდი ხედავს არა სად | გიორგი ნინო | თბილისი ბათუმი | ბორჯომი",
    "kk": "су үй кітап үлкен көреді жоқ қайда | Асқар Айгүл | Алматы Астана | Қазпошта",
    "ko": "물 집 책 큰 본다 않다 어디 | 민수 지영 | 서울 부산 | 삼성",
    "lt": "vanduo namas knyga didelis mato ne kur | Jonas Ona | Vilnius Kaunas | Žalgiris",
    "ml": "വെള്ളം വീട് പുസ്തകം വലിയ കാണുന്നു ഇല്ല എവിടെ | രാമൻ സീത | കൊച്ചി കോഴിക്കോട് | മിൽമ",
    "mr": "पाणी घर पुस्तक मोठे पाहतो नाही कुठे | गणेश सीमा | पुणे नागपूर | बजाज",
    "ms": "air rumah buku besar melihat tidak mana | Ahmad Aminah | Melaka Ipoh | Petronas",
    "my": "ရေ အိမ် စာအုပ် ကြီး မြင် မ ဘယ်မှာ | အောင် စု | ရန်ကုန် မန္တလေး | ဧရာဝတီ",
    "nl": "water huis boek groot ziet niet waar | Jan Sanne | Amsterdam Utrecht | Philips",
    "pa": "ਪਾਣੀ ਘਰ ਕਿਤਾਬ ਵੱਡਾ ਵੇਖਦਾ ਨਹੀਂ ਕਿੱਥੇ | ਗੁਰਪ੍ਰੀਤ ਹਰਜੀਤ | ਅੰਮ੍ਰਿਤਸਰ ਲੁਧਿਆਣਾ | ਵੇਰਕਾ",
    "pl": "woda dom książka duży widzi nie gdzie | Jan Anna | Warszawa Kraków | Orlen",
    "pt": "água casa livro grande vê não onde | João Ana | Lisboa Porto | Petrobras",
    "qu": "yaku wasi qillqa hatun rikun mana maypi | Kusi Killa | Qusqu Puno | Antawa",
    "ro": "apă casă carte mare vede nu unde | Ion Maria | București Cluj | Dacia",
    "ru": "вода дом книга большой видит не где | Иван Ольга | Москва Казань | Газпром",
    "sw": "maji nyumba kitabu kubwa anaona si wapi | Juma Amina | Nairobi Mombasa | Safaricom",
    "ta": "தண்ணீர் வீடு புத்தகம் பெரிய பார்க்கிறார் இல்லை எங்கே | முருகன் மீனா | சென்னை மதுரை"
          " | ஆவின்",
    "te": "నీరు ఇల్లు పుస్తకం పెద్ద చూస్తాడు కాదు ఎక్కడ | రాము లక్ష్మి | హైదరాబాద్ విజయవాడ"
          " | ఇన్ఫోసిస్",
    "th": "น้ำ บ้าน หนังสือ ใหญ่ เห็น ไม่ ที่ไหน | สมชาย มาลี | กรุงเทพ เชียงใหม่ | ปตท",
    "tl": "tubig bahay aklat malaki nakikita hindi saan | Jose Maria | Maynila Cebu | Jollibee",
    "tr": "su ev kitap büyük görür değil nerede | Ahmet Ayşe | İstanbul Ankara | Arçelik",
    "uk": "вода будинок книга великий бачить не де | Тарас Оксана | Київ Львів | Укрпошта",
    "ur": "پانی گھر کتاب بڑا دیکھتا نہیں کہاں | احمد عائشہ | لاہور کراچی | حبیب",
    "vi": "nước nhà sách lớn thấy không đâu | Nam Lan | Huế Vinh | Vinamilk",
    "wo": "ndox kër téere mag gis du fan | Moussa Awa | Dakar Thiès | Sonatel",
    "yo": "omi ilé ìwé ńlá rí kò níbo | Tunde Bisi | Èkó Ìbàdàn | Dangote",
    "zh": "水 房子 书 大 看见 不 哪里 | 李明 王芳 | 北京 上海 | 华为",
}


@dataclasses.dataclass(frozen=True)
class Lexicon:
    lang: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    verbs: tuple[str, ...]
    negation: str
    where: str
    persons: tuple[str, ...]
    places: tuple[str, ...]
    orgs: tuple[str, ...]


def _parse(lang: str, raw: str) -> Lexicon:
    words, persons, places, orgs = (part.split() for part in raw.split("|"))
    if len(words) != 7 or len(persons) != 2 or len(places) != 2 or len(orgs) != 1:
        raise ValueError(f"lexicon entry for {lang!r} is malformed: {raw!r}")
    return Lexicon(lang, tuple(words[:3]), (words[3],), (words[4],), words[5], words[6],
                   tuple(persons), tuple(places), tuple(orgs))


LEXICONS: dict[str, Lexicon] = {lang: _parse(lang, raw) for lang, raw in _RAW.items()}

# English training sets need more variety than the 3-8 evaluation examples of other languages.
ENGLISH = Lexicon(
    "en",
    nouns=("water", "house", "book", "car", "dog", "tree", "river", "letter"),
    adjectives=("big", "small", "red", "old"),
    verbs=("sees", "likes", "buys"),
    negation="never",
    where="where",
    persons=("John", "Mary", "Peter", "Anna", "Tom", "Lisa", "David", "Sarah"),
    places=("London", "Paris", "Rome", "Berlin", "Tokyo", "Madrid", "Cairo", "Delhi"),
    orgs=("Google", "Siemens", "Nokia", "Sony", "Toyota"),
)
ENGLISH_SURNAMES = ("Smith", "Brown", "Jones", "Miller")
