#!/usr/bin/env python3
"""Generate the Hugging Face parity fixtures of NeuronXA Explorer.

Run by developers (never by CI), from the repository root:

    /work/pyenv/bin/python scripts/make_fixtures.py            # everything
    /work/pyenv/bin/python scripts/make_fixtures.py --only tiny # tiny models only
    /work/pyenv/bin/python scripts/make_fixtures.py --only demo --demo-gguf PATH
    /work/pyenv/bin/python scripts/make_fixtures.py --only converted --llama-cpp DIR

Everything is written under tests/fixtures/ (see tests/fixtures/README.md for the contents and the
exact definitions). All computation is float32 on CPU with eager attention, model.eval() and
torch.no_grad(); seeds are fixed so that a rerun reproduces the same weights, and on the same CPU
the same references (another CPU changes their last bits: tests/fixtures/README.md).

The demo GGUF is taken from --demo-gguf, else $NEURONXA_DEMO_GGUF, else
~/.cache/neuronxa/models/SmolLM2-135M-Instruct.Q4_1.gguf. Without it, the demo part is skipped.

The converted part runs llama.cpp's own converter (DIR/convert_hf_to_gguf.py, e.g. from the
llama-cpp-python sdist on PyPI, whose vendor/llama.cpp holds it) on the tiny models; taken from
--llama-cpp, else $NEURONXA_LLAMA_CPP. Without it, that part is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

# Quieten progress bars / advisory warnings of transformers before importing it.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import transformers  # noqa: E402
from safetensors.torch import save as st_save  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
TINY = FIX / "tiny"
LANGS = ["en", "zh", "fr", "de", "it", "es", "ru", "ar", "hi", "ja"]
FLORES = {
    "en": "eng_Latn", "zh": "zho_Hans", "fr": "fra_Latn", "de": "deu_Latn", "it": "ita_Latn",
    "es": "spa_Latn", "ru": "rus_Cyrl", "ar": "arb_Arab", "hi": "hin_Deva", "ja": "jpn_Jpan",
}
SEED = 20250731
GATE_EPS = 1e-5  # NAS entries whose min_t |gate| is below this are not comparable

# --------------------------------------------------------------------------------------------
# 2a. Sentences. Parallel across languages. Per language: 3 fixture sentences (the 2nd is the
# long one, > 20 tokens with every tokenizer here; the 3rd contains digits), 10 demo sentences
# and 4 extra sentences used only to train the tiny tokenizers.
# --------------------------------------------------------------------------------------------
TEXT = {
    "en": {
        "fixture": [
            "The cat sleeps on the warm windowsill.",
            "Yesterday we walked to the old market and bought fresh bread, cheese, and some apples for the trip to the mountains.",
            "Where is the nearest train station? The train leaves at 10:45.",
        ],
        "demo": [
            "The weather is nice today.",
            "My brother works in a hospital in the city.",
            "She reads a book every evening before going to sleep.",
            "The children are playing football in the park.",
            "We need to buy milk and eggs.",
            "The museum opens at nine in the morning.",
            "He forgot his umbrella at the restaurant.",
            "Learning a new language takes time and patience.",
            "The river flows slowly through the small village.",
            "Please close the door when you leave.",
        ],
        "extra": [
            "The library is closed on Sundays.",
            "I would like a cup of tea with lemon, please.",
            "Our teacher explained the lesson very clearly.",
            "The sun rises in the east and sets in the west.",
        ],
    },
    "zh": {
        "fixture": [
            "猫在温暖的窗台上睡觉。",
            "昨天我们走到老市场，买了新鲜的面包、奶酪和一些苹果，准备去山里旅行。",
            "最近的火车站在哪里？火车10:45出发。",
        ],
        "demo": [
            "今天天气很好。",
            "我哥哥在城里的一家医院工作。",
            "她每天晚上睡觉前都读一本书。",
            "孩子们在公园里踢足球。",
            "我们需要买牛奶和鸡蛋。",
            "博物馆早上九点开门。",
            "他把雨伞忘在餐厅了。",
            "学习一门新语言需要时间和耐心。",
            "河水缓缓流过小村庄。",
            "离开时请关门。",
        ],
        "extra": [
            "图书馆星期天不开门。",
            "请给我一杯加柠檬的茶。",
            "我们的老师把这节课讲得很清楚。",
            "太阳从东方升起，从西方落下。",
        ],
    },
    "fr": {
        "fixture": [
            "Le chat dort sur le rebord chaud de la fenêtre.",
            "Hier, nous sommes allés au vieux marché et nous avons acheté du pain frais, du fromage et quelques pommes pour le voyage à la montagne.",
            "Où est la gare la plus proche ? Le train part à 10 h 45.",
        ],
        "demo": [
            "Il fait beau aujourd'hui.",
            "Mon frère travaille dans un hôpital en ville.",
            "Elle lit un livre chaque soir avant de dormir.",
            "Les enfants jouent au football dans le parc.",
            "Nous devons acheter du lait et des œufs.",
            "Le musée ouvre à neuf heures du matin.",
            "Il a oublié son parapluie au restaurant.",
            "Apprendre une nouvelle langue demande du temps et de la patience.",
            "La rivière coule lentement à travers le petit village.",
            "Veuillez fermer la porte en partant.",
        ],
        "extra": [
            "La bibliothèque est fermée le dimanche.",
            "Je voudrais une tasse de thé au citron, s'il vous plaît.",
            "Notre professeur a expliqué la leçon très clairement.",
            "Le soleil se lève à l'est et se couche à l'ouest.",
        ],
    },
    "de": {
        "fixture": [
            "Die Katze schläft auf der warmen Fensterbank.",
            "Gestern sind wir zum alten Markt gegangen und haben frisches Brot, Käse und ein paar Äpfel für die Reise in die Berge gekauft.",
            "Wo ist der nächste Bahnhof? Der Zug fährt um 10:45 Uhr ab.",
        ],
        "demo": [
            "Das Wetter ist heute schön.",
            "Mein Bruder arbeitet in einem Krankenhaus in der Stadt.",
            "Sie liest jeden Abend ein Buch, bevor sie schlafen geht.",
            "Die Kinder spielen im Park Fußball.",
            "Wir müssen Milch und Eier kaufen.",
            "Das Museum öffnet um neun Uhr morgens.",
            "Er hat seinen Regenschirm im Restaurant vergessen.",
            "Eine neue Sprache zu lernen braucht Zeit und Geduld.",
            "Der Fluss fließt langsam durch das kleine Dorf.",
            "Bitte schließen Sie die Tür, wenn Sie gehen.",
        ],
        "extra": [
            "Die Bibliothek ist sonntags geschlossen.",
            "Ich hätte gern eine Tasse Tee mit Zitrone, bitte.",
            "Unser Lehrer hat die Lektion sehr klar erklärt.",
            "Die Sonne geht im Osten auf und im Westen unter.",
        ],
    },
    "it": {
        "fixture": [
            "Il gatto dorme sul davanzale caldo.",
            "Ieri siamo andati al vecchio mercato e abbiamo comprato pane fresco, formaggio e alcune mele per il viaggio in montagna.",
            "Dov'è la stazione ferroviaria più vicina? Il treno parte alle 10:45.",
        ],
        "demo": [
            "Oggi il tempo è bello.",
            "Mio fratello lavora in un ospedale in città.",
            "Lei legge un libro ogni sera prima di andare a dormire.",
            "I bambini giocano a calcio nel parco.",
            "Dobbiamo comprare latte e uova.",
            "Il museo apre alle nove del mattino.",
            "Ha dimenticato l'ombrello al ristorante.",
            "Imparare una nuova lingua richiede tempo e pazienza.",
            "Il fiume scorre lentamente attraverso il piccolo villaggio.",
            "Per favore, chiudi la porta quando esci.",
        ],
        "extra": [
            "La biblioteca è chiusa la domenica.",
            "Vorrei una tazza di tè al limone, per favore.",
            "Il nostro insegnante ha spiegato la lezione molto chiaramente.",
            "Il sole sorge a est e tramonta a ovest.",
        ],
    },
    "es": {
        "fixture": [
            "El gato duerme en el alféizar cálido de la ventana.",
            "Ayer caminamos hasta el viejo mercado y compramos pan fresco, queso y algunas manzanas para el viaje a las montañas.",
            "¿Dónde está la estación de tren más cercana? El tren sale a las 10:45.",
        ],
        "demo": [
            "Hoy hace buen tiempo.",
            "Mi hermano trabaja en un hospital de la ciudad.",
            "Ella lee un libro cada noche antes de dormir.",
            "Los niños juegan al fútbol en el parque.",
            "Necesitamos comprar leche y huevos.",
            "El museo abre a las nueve de la mañana.",
            "Él olvidó su paraguas en el restaurante.",
            "Aprender un idioma nuevo requiere tiempo y paciencia.",
            "El río fluye lentamente por el pequeño pueblo.",
            "Por favor, cierra la puerta cuando salgas.",
        ],
        "extra": [
            "La biblioteca está cerrada los domingos.",
            "Quisiera una taza de té con limón, por favor.",
            "Nuestro profesor explicó la lección muy claramente.",
            "El sol sale por el este y se pone por el oeste.",
        ],
    },
    "ru": {
        "fixture": [
            "Кошка спит на тёплом подоконнике.",
            "Вчера мы пошли на старый рынок и купили свежий хлеб, сыр и несколько яблок для поездки в горы.",
            "Где ближайший вокзал? Поезд отправляется в 10:45.",
        ],
        "demo": [
            "Сегодня хорошая погода.",
            "Мой брат работает в больнице в городе.",
            "Каждый вечер перед сном она читает книгу.",
            "Дети играют в футбол в парке.",
            "Нам нужно купить молоко и яйца.",
            "Музей открывается в девять часов утра.",
            "Он забыл свой зонт в ресторане.",
            "Изучение нового языка требует времени и терпения.",
            "Река медленно течёт через маленькую деревню.",
            "Пожалуйста, закройте дверь, когда будете уходить.",
        ],
        "extra": [
            "Библиотека закрыта по воскресеньям.",
            "Я бы хотел чашку чая с лимоном, пожалуйста.",
            "Наш учитель очень понятно объяснил урок.",
            "Солнце встаёт на востоке и садится на западе.",
        ],
    },
    "ar": {
        "fixture": [
            "القطة تنام على حافة النافذة الدافئة.",
            "ذهبنا أمس إلى السوق القديم واشترينا خبزًا طازجًا وجبنًا وبعض التفاح للرحلة إلى الجبال.",
            "أين أقرب محطة قطار؟ يغادر القطار الساعة 10:45.",
        ],
        "demo": [
            "الطقس جميل اليوم.",
            "يعمل أخي في مستشفى في المدينة.",
            "تقرأ كتابًا كل مساء قبل أن تنام.",
            "الأطفال يلعبون كرة القدم في الحديقة.",
            "نحتاج إلى شراء الحليب والبيض.",
            "يفتح المتحف في الساعة التاسعة صباحًا.",
            "نسي مظلته في المطعم.",
            "تعلم لغة جديدة يحتاج إلى الوقت والصبر.",
            "يجري النهر ببطء عبر القرية الصغيرة.",
            "من فضلك أغلق الباب عندما تغادر.",
        ],
        "extra": [
            "المكتبة مغلقة يوم الأحد.",
            "أريد كوبًا من الشاي بالليمون من فضلك.",
            "شرح معلمنا الدرس بوضوح شديد.",
            "تشرق الشمس من الشرق وتغرب في الغرب.",
        ],
    },
    "hi": {
        "fixture": [
            "बिल्ली खिड़की की गरम चौखट पर सो रही है।",
            "कल हम पुराने बाज़ार तक पैदल गए और पहाड़ों की यात्रा के लिए ताज़ी रोटी, पनीर और कुछ सेब खरीदे।",
            "सबसे नज़दीकी रेलवे स्टेशन कहाँ है? ट्रेन 10:45 बजे निकलती है।",
        ],
        "demo": [
            "आज मौसम अच्छा है।",
            "मेरा भाई शहर के एक अस्पताल में काम करता है।",
            "वह हर शाम सोने से पहले एक किताब पढ़ती है।",
            "बच्चे पार्क में फ़ुटबॉल खेल रहे हैं।",
            "हमें दूध और अंडे खरीदने हैं।",
            "संग्रहालय सुबह नौ बजे खुलता है।",
            "वह अपना छाता रेस्टोरेंट में भूल गया।",
            "नई भाषा सीखने में समय और धैर्य लगता है।",
            "नदी छोटे से गाँव से होकर धीरे-धीरे बहती है।",
            "कृपया जाते समय दरवाज़ा बंद कर दें।",
        ],
        "extra": [
            "पुस्तकालय रविवार को बंद रहता है।",
            "कृपया मुझे नींबू वाली एक कप चाय दीजिए।",
            "हमारे शिक्षक ने पाठ बहुत स्पष्ट रूप से समझाया।",
            "सूरज पूर्व में उगता है और पश्चिम में डूबता है।",
        ],
    },
    "ja": {
        "fixture": [
            "猫は暖かい窓辺で眠っています。",
            "昨日、私たちは古い市場まで歩いて行き、山への旅行のために新鮮なパンとチーズといくつかのリンゴを買いました。",
            "一番近い駅はどこですか？電車は10時45分に出発します。",
        ],
        "demo": [
            "今日はいい天気です。",
            "私の兄は町の病院で働いています。",
            "彼女は毎晩寝る前に本を読みます。",
            "子供たちは公園でサッカーをしています。",
            "牛乳と卵を買う必要があります。",
            "博物館は朝九時に開きます。",
            "彼はレストランに傘を忘れました。",
            "新しい言語を学ぶには時間と忍耐が必要です。",
            "川は小さな村をゆっくりと流れています。",
            "出かけるときはドアを閉めてください。",
        ],
        "extra": [
            "図書館は日曜日は休みです。",
            "レモン入りの紅茶を一杯お願いします。",
            "先生は授業をとても分かりやすく説明しました。",
            "太陽は東から昇り、西に沈みます。",
        ],
    },
}


def fixture_sentences() -> list[dict]:
    return [{"lang": lang, "text": t} for lang in LANGS for t in TEXT[lang]["fixture"]]


def demo_sentences() -> tuple[list[dict], str]:
    """First 10 lines per language of the bundled corpus if it is complete, else the embedded set."""
    data = ROOT / "data"
    files = {lang: data / f"{FLORES[lang]}.txt" for lang in LANGS}
    if all(f.is_file() for f in files.values()):
        out = []
        for lang in LANGS:
            lines = [ln.strip() for ln in files[lang].read_text(encoding="utf-8").splitlines() if ln.strip()]
            if len(lines) < 10:
                break
            out += [{"lang": lang, "text": t} for t in lines[:10]]
        else:
            return out, "data/<flores_code>.txt, first 10 non-empty lines each"
    return [{"lang": lang, "text": t} for lang in LANGS for t in TEXT[lang]["demo"]], "embedded in scripts/make_fixtures.py"


def training_text() -> list[str]:
    lines = []
    for lang in LANGS:
        for part in ("fixture", "demo", "extra"):
            lines += TEXT[lang][part]
    return lines


# --------------------------------------------------------------------------------------------
# 2b. Tokenizers
# --------------------------------------------------------------------------------------------
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>"]


def build_bytelevel_tokenizer(add_bos: bool):
    """Byte-level BPE with Qwen2's exact pipeline (NFC normalizer, Qwen2 split regex with single
    digits, ByteLevel without its own regex), vocab 768 = 4 specials + 256 bytes + merges.

    add_bos=False: Qwen-style (nothing added). add_bos=True: Llama-3 style, a TemplateProcessing
    post-processor prepends <|begin_of_text|>."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=768,
        min_frequency=2,
        special_tokens=BL_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text() * 3, trainer=trainer)
    if add_bos:
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", bos)],
        )
        specials = dict(bos_token="<|begin_of_text|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        specials = dict(unk_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **specials)


def train_sentencepiece(out: Path) -> Path:
    """Llama-style SentencePiece BPE with byte fallback, vocab 1000, written to `out`."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_text() * 3),
        model_writer=buf,
        model_type="bpe",
        vocab_size=1000,
        byte_fallback=True,
        character_coverage=0.98,  # rare characters fall back to <0xNN> byte pieces
        split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    out.write_bytes(buf.getvalue())
    return out


def build_llama_tokenizer(sp_model: Path):
    """Convert the SentencePiece model with transformers' LlamaTokenizer(Fast) (adds BOS by default)."""
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(sp_model, Path(d) / "tokenizer.model")
        tok = transformers.LlamaTokenizerFast.from_pretrained(d, legacy=False, add_bos_token=True)
    return tok


# --------------------------------------------------------------------------------------------
# 2c. Tiny models
# --------------------------------------------------------------------------------------------
COMMON = dict(
    hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    max_position_embeddings=512, initializer_range=0.2, rms_norm_eps=1e-6,
)


def tiny_specs(v_sp: int, v_bl: int):
    """name -> (config, tokenizer kind, weights dtype, config.json format)."""
    sp_ids = dict(bos_token_id=1, eos_token_id=2, pad_token_id=None)
    bl_ids = dict(bos_token_id=3, eos_token_id=0, pad_token_id=0)
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 64}
    return {
        "llama": (transformers.LlamaConfig(
            vocab_size=v_sp, num_hidden_layers=3, rope_theta=500000.0, rope_scaling=llama3,
            tie_word_embeddings=True, **sp_ids, **{**COMMON, "rms_norm_eps": 1e-5}), "sp", "bf16", "legacy"),
        "mistral": (transformers.MistralConfig(
            vocab_size=v_sp, num_hidden_layers=2, sliding_window=8, rope_theta=10000.0,
            tie_word_embeddings=False, **sp_ids, **{**COMMON, "rms_norm_eps": 1e-5}), "sp", "f32-sharded", "legacy"),
        "qwen2": (transformers.Qwen2Config(
            vocab_size=v_bl, num_hidden_layers=2, rope_theta=1000000.0, tie_word_embeddings=True,
            use_sliding_window=False, **bl_ids, **COMMON), "bl-nobos", "f32", "v5"),
        "qwen3": (transformers.Qwen3Config(
            vocab_size=v_bl, num_hidden_layers=2, rope_theta=1000000.0, tie_word_embeddings=True,
            use_sliding_window=False, attention_bias=False, **bl_ids, **COMMON), "bl-bos", "f32", "v5"),
        "gemma2": (transformers.Gemma2Config(
            vocab_size=v_sp, num_hidden_layers=4, sliding_window=8, attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0, query_pre_attn_scalar=16, hidden_activation="gelu_pytorch_tanh",
            rope_theta=10000.0, tie_word_embeddings=True, **sp_ids, **COMMON), "sp", "f32", "v5"),
        "gemma3": (transformers.Gemma3TextConfig(
            vocab_size=v_sp, num_hidden_layers=4, sliding_window=8, sliding_window_pattern=4,
            layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
            rope_theta=1000000.0, rope_local_base_freq=10000.0, query_pre_attn_scalar=24,
            hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=None, attn_logit_softcapping=None,
            tie_word_embeddings=True, **sp_ids, **COMMON), "sp", "f32", "legacy"),
        # Gemma 4 as the E2B/E4B (per-layer embeddings, the last layers reusing earlier keys and
        # values) with the 31B's attention (global layers of wider heads, fewer key/value heads,
        # values from the keys' projection, a quarter of each pair turning).
        "gemma4": (transformers.Gemma4TextConfig(
            vocab_size=v_sp, num_hidden_layers=6, sliding_window=8,
            layer_types=["sliding_attention", "sliding_attention", "full_attention",
                         "sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 1000000.0}},
            global_head_dim=32, num_global_key_value_heads=1, attention_k_eq_v=True,
            hidden_size_per_layer_input=8, vocab_size_per_layer_input=v_sp, num_kv_shared_layers=2,
            hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=30.0,
            tie_word_embeddings=True, **sp_ids, **COMMON), "sp", "f32", "legacy"),
        # Gemma 4 26B A4B's layout: a mixture of experts beside every layer's dense MLP, the
        # router reading the residual stream through a norm of its own.
        "gemma4_moe": (transformers.Gemma4TextConfig(
            vocab_size=v_sp, num_hidden_layers=3, sliding_window=8,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 1000000.0}},
            global_head_dim=32, num_global_key_value_heads=1, attention_k_eq_v=True,
            hidden_size_per_layer_input=0, num_kv_shared_layers=0,
            enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32,
            hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=30.0,
            tie_word_embeddings=True, **sp_ids, **COMMON), "sp", "f32", "legacy"),
        "gemma": (transformers.GemmaConfig(
            vocab_size=v_sp, num_hidden_layers=2, hidden_act="gelu_pytorch_tanh", rope_theta=10000.0,
            tie_word_embeddings=True, **sp_ids, **COMMON), "sp", "f32", "legacy"),
        "olmo2": (transformers.Olmo2Config(
            vocab_size=v_bl, num_hidden_layers=2, rope_theta=500000.0, tie_word_embeddings=False,
            **bl_ids, **{k: v for k, v in COMMON.items() if k != "head_dim"}), "bl-nobos", "f32", "v5"),
        "phi3": (transformers.Phi3Config(
            vocab_size=v_sp, num_hidden_layers=2, sliding_window=8, tie_word_embeddings=False,
            max_position_embeddings=2048,
            original_max_position_embeddings=512,
            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                             "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.1, 3.8],
                             "long_factor": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
                             "original_max_position_embeddings": 512},
            **sp_ids, **{k: v for k, v in COMMON.items() if k not in ("head_dim", "max_position_embeddings")}), "sp", "f32", "legacy"),
        # OLMo (1), as OLMo-1.7-7B: LayerNorms without weight or bias, q/k/v clamped to ±2 (about
        # a fifth of the projected values here), untied.
        "olmo": (transformers.OlmoConfig(
            vocab_size=v_bl, num_hidden_layers=2, clip_qkv=2.0, rope_theta=10000.0,
            tie_word_embeddings=False, **bl_ids,
            **{k: v for k, v in COMMON.items() if k not in ("head_dim", "rms_norm_eps")}), "bl-nobos", "f32", "v5"),
        # GPT-NeoX as Pythia: attention and the MLP side by side, each on its own LayerNorm
        # (with bias) of the layer's input; rotary on a quarter of each head (4 of 16); q/k/v in
        # one matrix grouped by head; non-gated erf-GELU MLP; untied (`embed_out`).
        "gpt_neox": (transformers.GPTNeoXConfig(
            vocab_size=v_bl, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, max_position_embeddings=512, hidden_act="gelu",
            use_parallel_residual=True, layer_norm_eps=1e-5, attention_bias=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
            initializer_range=0.2, tie_word_embeddings=False, **bl_ids), "bl-nobos", "f32", "v5"),
        # Falcon's new decoder architecture (40B, 180B): 4 query heads on 2 key/value heads, q/k/v
        # grouped per key/value head, attention and MLP side by side on ln_attn / ln_mlp, no
        # linear biases, erf-GELU MLP, untied.
        "falcon": (transformers.FalconConfig(
            vocab_size=v_bl, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_kv_heads=2,
            new_decoder_architecture=True, num_ln_in_parallel_attn=2, multi_query=False, parallel_attn=True,
            bias=False, alibi=False, ffn_hidden_size=128, max_position_embeddings=512, layer_norm_epsilon=1e-5,
            activation="gelu", rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            initializer_range=0.2, tie_word_embeddings=False, **bl_ids), "bl-nobos", "f32", "v5"),
        # Falcon 7B's layout: multi-query (one key/value head), attention and MLP side by side on
        # one input_layernorm, tied.
        "falcon_7b": (transformers.FalconConfig(
            vocab_size=v_bl, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            new_decoder_architecture=False, multi_query=True, parallel_attn=True, bias=False, alibi=False,
            ffn_hidden_size=128, max_position_embeddings=512, layer_norm_epsilon=1e-5, activation="gelu",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            initializer_range=0.2, tie_word_embeddings=True, **bl_ids), "bl-nobos", "f32", "v5"),
        # XGLM: fixed sinusoidal positions from 2, embeddings × sqrt(64), pre-LayerNorms with
        # bias, biases everywhere, non-gated erf-GELU MLP (d_ff 128), tied. SentencePiece, as the
        # real ones.
        "xglm": (transformers.XGLMConfig(
            vocab_size=v_sp, d_model=64, ffn_dim=128, num_layers=2, attention_heads=4,
            max_position_embeddings=512, activation_function="gelu", scale_embedding=True,
            init_std=0.2, tie_word_embeddings=True, **sp_ids), "sp", "f32", "v5"),
        # StableLM 2 1.6B's shape: LayerNorms with bias, rotary on a quarter of each head (4 of
        # 16 dimensions), q/k/v biases, gated SiLU MLP, untied.
        "stablelm": (transformers.StableLmConfig(
            vocab_size=v_bl, num_hidden_layers=2, use_qkv_bias=True, use_parallel_residual=False,
            qk_layernorm=False, layer_norm_eps=1e-5, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
            **bl_ids, **{k: v for k, v in COMMON.items() if k not in ("head_dim", "rms_norm_eps")}),
            "bl-nobos", "f32", "v5"),
        # Phi-4-mini's shape: rotary on 3/4 of each head (12 of 16 dimensions), LongRoPE over
        # those 12, tied embeddings, a byte-level BPE tokenizer, no sliding window.
        "phi4_mini": (transformers.Phi3Config(
            vocab_size=v_bl, num_hidden_layers=2, sliding_window=None, tie_word_embeddings=True,
            max_position_embeddings=2048, original_max_position_embeddings=512,
            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
                             "short_factor": [1.0, 1.2, 1.5, 1.9, 2.4, 3.0],
                             "long_factor": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
                             "original_max_position_embeddings": 512},
            **bl_ids, **{k: v for k, v in COMMON.items() if k not in ("head_dim", "max_position_embeddings")}),
            "bl-nobos", "f32", "v5"),
        "smollm3": (transformers.SmolLM3Config(
            vocab_size=v_bl, num_hidden_layers=4, no_rope_layer_interval=4, rope_theta=2000000.0,
            tie_word_embeddings=True, **bl_ids, **{k: v for k, v in COMMON.items() if k != "head_dim"}),
            "bl-bos", "f32", "v5"),
        "granite": (transformers.GraniteConfig(
            vocab_size=v_sp, num_hidden_layers=2, embedding_multiplier=12.0, attention_multiplier=0.05,
            residual_multiplier=0.22, logits_scaling=8.0, rope_theta=10000.0, tie_word_embeddings=True,
            **sp_ids, **{k: v for k, v in COMMON.items() if k != "head_dim"}), "sp", "f32", "v5"),
        "cohere": (transformers.CohereConfig(
            vocab_size=v_bl, num_hidden_layers=2, logit_scale=0.25, layer_norm_eps=1e-5, rope_theta=10000.0,
            tie_word_embeddings=True, **bl_ids,
            **{k: v for k, v in COMMON.items() if k not in ("head_dim", "rms_norm_eps")}), "bl-bos", "f32", "v5"),
        "gpt2": (transformers.GPT2Config(
            vocab_size=v_bl, n_embd=64, n_layer=2, n_head=4, n_inner=128, n_positions=512,
            activation_function="gelu_new", layer_norm_epsilon=1e-5, initializer_range=0.2,
            tie_word_embeddings=True, **bl_ids), "bl-nobos", "f32", "v5"),
        "bloom": (transformers.BloomConfig(
            vocab_size=v_bl, hidden_size=64, n_layer=2, n_head=4, layer_norm_epsilon=1e-5,
            initializer_range=0.2, tie_word_embeddings=True, **bl_ids), "bl-nobos", "f32", "v5"),
        "cohere2": (transformers.Cohere2Config(
            vocab_size=v_bl, num_hidden_layers=4, sliding_window=8, logit_scale=0.25, layer_norm_eps=1e-5,
            rope_theta=10000.0, tie_word_embeddings=True, **bl_ids,
            **{k: v for k, v in COMMON.items() if k not in ("head_dim", "rms_norm_eps")}), "bl-bos", "f32", "v5"),
        "olmo3": (transformers.Olmo3Config(
            vocab_size=v_bl, num_hidden_layers=4, sliding_window=8, rope_theta=500000.0,
            rope_scaling={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64},
            tie_word_embeddings=False, **bl_ids, **{k: v for k, v in COMMON.items() if k != "head_dim"}),
            "bl-nobos", "f32", "legacy"),
        # Apertus: Llama's attention with per-head q/k RMSNorm and llama3 rotary scaling; a
        # non-gated MLP down(xIELU(up(h))) whose xIELU parameters are random per layer here
        # (init_weights), so that it turns positive again below about -1.7 and NAS = 1[a > 0]
        # differs from the sign of up(h); its own norm names; bf16 on disk, as released.
        "apertus": (transformers.ApertusConfig(
            vocab_size=v_bl, num_hidden_layers=2, hidden_act="xielu",
            rope_parameters={"rope_type": "llama3", "rope_theta": 12000000.0, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
            tie_word_embeddings=False, **bl_ids, **COMMON), "bl-bos", "bf16", "legacy"),
        # Llama with `attention_bias`: biases on q, k, v and the output projection (Qwen2's
        # stop at v), which Llama's successors (Qwen3, Gemma, OLMo, Granite, Cohere, SmolLM3,
        # Apertus) read the same way.
        "llama_bias": (transformers.LlamaConfig(
            vocab_size=v_bl, num_hidden_layers=2, rope_theta=10000.0, attention_bias=True,
            tie_word_embeddings=False, **bl_ids, **COMMON), "bl-nobos", "f32", "v5"),
        # Jais 2: Llama's names and rotary attention with LayerNorms (weight and bias), biases on
        # q, k, v, o and both MLP projections, a non-gated MLP down(relu(up(h))²), untied.
        "jais2": (transformers.Jais2Config(
            vocab_size=v_bl, num_hidden_layers=2, layer_norm_eps=1e-5, attention_bias=True, mlp_bias=True,
            hidden_act="relu2", rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False, **bl_ids, **{k: v for k, v in COMMON.items() if k != "rms_norm_eps"}),
            "bl-bos", "f32", "v5"),
        # Nemotron-4 / Minitron (e.g. Nemotron-4-Mini-Hindi): "1p" LayerNorms x̂·(1 + w) + b (norm
        # weights drawn as Gemma's), rotary on half of each head (8 of 16), no biases, non-gated
        # MLP down(relu(up(h))²), untied; SentencePiece, as the real ones; legacy config with
        # `partial_rotary_factor` at the top level, as released.
        "nemotron": (transformers.NemotronConfig(
            vocab_size=v_sp, num_hidden_layers=2, norm_eps=1e-5, hidden_act="relu2",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            tie_word_embeddings=False, **sp_ids, **{k: v for k, v in COMMON.items() if k != "rms_norm_eps"}),
            "sp", "f32", "legacy"),
        # Mixtures of experts (engine::moe): the router's softmax over the experts, the two best
        # per token; a layer's neurons are every expert's (8 × 16 or 4 × 32 = 128), an expert's
        # inactive where it is not chosen. OLMoE: q/k norms over all heads, weights as the
        # softmax gave them, rms eps 1e-5 (as released; llama.cpp's converter writes it); Qwen3-MoE: Qwen3's attention, weights renormalized over the two;
        # Mixtral: Mistral's attention without a window (as released), renormalized,
        # `block_sparse_moe` names.
        "olmoe": (transformers.OlmoeConfig(
            vocab_size=v_bl, num_hidden_layers=2, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
            rope_theta=10000.0, tie_word_embeddings=False, **bl_ids,
            **{**{k: v for k, v in COMMON.items() if k != "head_dim"}, "intermediate_size": 16, "rms_norm_eps": 1e-5}),
            "bl-nobos", "f32", "v5"),
        "qwen3_moe": (transformers.Qwen3MoeConfig(
            vocab_size=v_bl, num_hidden_layers=2, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
            moe_intermediate_size=16, decoder_sparse_step=1, mlp_only_layers=[], rope_theta=1000000.0,
            use_sliding_window=False, tie_word_embeddings=True, **bl_ids, **COMMON), "bl-bos", "f32", "v5"),
        "mixtral": (transformers.MixtralConfig(
            vocab_size=v_sp, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
            rope_theta=10000.0, tie_word_embeddings=False, **sp_ids,
            **{**COMMON, "intermediate_size": 32, "rms_norm_eps": 1e-5}), "sp", "f32", "legacy"),
        # GLM (the "-hf" GLM-4-9B) and GLM-4 (-0414): q/k/v biases (not o), rotary on the first
        # half of each head (8 of 16) in neighbouring pairs, gate and up in one gate_up_proj;
        # GLM-4 adds norms on attention's and the MLP's outputs (post_self_attn_layernorm,
        # post_mlp_layernorm); untied.
        "glm": (transformers.GlmConfig(
            vocab_size=v_bl, num_hidden_layers=2, attention_bias=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            tie_word_embeddings=False, **bl_ids, **COMMON), "bl-nobos", "f32", "v5"),
        "glm4": (transformers.Glm4Config(
            vocab_size=v_bl, num_hidden_layers=2, attention_bias=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            tie_word_embeddings=False, **bl_ids, **COMMON), "bl-nobos", "f32", "v5"),
        # Qwen2-MoE: Qwen2's attention (q/k/v biases), 8 experts of 12, 2 per token, weights as
        # the softmax gave them, and a shared expert of 32 that every token runs, scaled by
        # sigmoid(w·h): 8 × 12 + 32 = 128 neurons, the shared expert's last; tied.
        "qwen2_moe": (transformers.Qwen2MoeConfig(
            vocab_size=v_bl, num_hidden_layers=2, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
            moe_intermediate_size=12, shared_expert_intermediate_size=32, decoder_sparse_step=1, mlp_only_layers=[],
            rope_theta=1000000.0, use_sliding_window=False, tie_word_embeddings=True, **bl_ids,
            **{k: v for k, v in COMMON.items() if k != "head_dim"}), "bl-nobos", "f32", "v5"),
        # EXAONE 4.0 as the 32B: norms only on attention's and the MLP's outputs (OLMo 2's), q/k
        # RMSNorms per head, three sliding layers (window 8) for each global one, rotary on the
        # sliding layers only; untied.
        "exaone4": (transformers.Exaone4Config(
            vocab_size=v_bl, num_hidden_layers=4, sliding_window=8, sliding_window_pattern=4, rope_theta=10000.0,
            tie_word_embeddings=False, **bl_ids, **COMMON), "bl-bos", "f32", "v5"),
        # Helium (Kyutai, 24 EU languages): Llama with rotary on neighbouring pairs, no biases;
        # SentencePiece, as the real one; untied.
        "helium": (transformers.HeliumConfig(
            vocab_size=v_sp, num_hidden_layers=2, rope_theta=100000.0, attention_bias=False,
            tie_word_embeddings=False, **sp_ids, **COMMON), "sp", "f32", "v5"),
        # Arcee (AFM-4.5B): Llama's attention and norms, non-gated ReLU² MLP; untied.
        "arcee": (transformers.ArceeConfig(
            vocab_size=v_bl, num_hidden_layers=2, hidden_act="relu2", rope_theta=10000.0,
            tie_word_embeddings=False, **bl_ids, **COMMON), "bl-nobos", "f32", "v5"),
        # Ministral 3: Mistral with YaRN (factor 16 over 128 original positions) and Llama 4's
        # query scaling, which is 1 before position 128 (every fixture sentence is shorter; the
        # engine refuses longer ones); untied.
        "ministral3": (transformers.Ministral3Config(
            vocab_size=v_sp, num_hidden_layers=2, sliding_window=None,
            rope_parameters={"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 16.0,
                             "original_max_position_embeddings": 128, "beta_fast": 32.0, "beta_slow": 1.0,
                             "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.1},
            tie_word_embeddings=False, **sp_ids, **{**COMMON, "max_position_embeddings": 1024}), "sp", "f32", "v5"),
        # Mistral 3 (Mistral Small 3.x): a Pixtral vision tower and projector around a Mistral
        # language model (`text_config`, weights under `model.language_model.`); the tiny vision
        # tower is there to be skipped.
        "mistral3": (transformers.Mistral3Config(
            text_config=dict(model_type="mistral", vocab_size=v_sp, num_hidden_layers=2, sliding_window=None,
                             rope_theta=1000000.0, tie_word_embeddings=False, **sp_ids, **COMMON),
            vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, head_dim=16, image_size=32, patch_size=16),
            tie_word_embeddings=False), "sp", "f32", "v5"),
        # gpt-oss: attention sinks, biases on q/k/v/o, a window of 4 on the even layers, YaRN
        # (factor 32 over an original 64, not truncated), and 8 biased experts (2 per token) of
        # width 32 (a multiple of MXFP4's 32-value blocks, as is d_model) with the clamped
        # SwiGLU; its limit lowered from 7 to 2 so that both clamps bite on the fixture.
        "gpt_oss": (transformers.GptOssConfig(
            vocab_size=v_bl, num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=2,
            sliding_window=4, swiglu_limit=2.0, attention_bias=True,
            rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                             "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 64},
            tie_word_embeddings=False, **bl_ids, **{**COMMON, "intermediate_size": 32, "rms_norm_eps": 1e-5}),
            "bl-bos", "f32", "v5"),
        # Granite MoE (3.0/3.1 1B-A400M, 3B-A800M): Granite's four multipliers and 8 experts of
        # 16, 2 per token (a softmax over the chosen logits); experts stored stacked as
        # `block_sparse_moe.input_linear` / `output_linear`; untied, as transformers' default.
        "granitemoe": (transformers.GraniteMoeConfig(
            vocab_size=v_bl, num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=2,
            embedding_multiplier=12.0, attention_multiplier=0.05, residual_multiplier=0.22, logits_scaling=8.0,
            rope_theta=10000.0, tie_word_embeddings=False, **bl_ids,
            **{**{k: v for k, v in COMMON.items() if k != "head_dim"}, "intermediate_size": 16}),
            "bl-nobos", "f32", "v5"),
        # Qwen3.5 as released (Qwen3_5ForConditionalGeneration: a vision tower around the language
        # model, `text_config`, weights under `model.language_model.`): Gated DeltaNet linear
        # attention (a causal depthwise conv, L2-normed q/k, the gated delta rule, a gated
        # RMSNorm) in every other layer here (three in four in the real ones), full attention
        # with an output gate stored in q_proj beside the queries, per-head q/k norms, rotary
        # on a quarter of each head; every norm `1 + w`. Key heads (2 of 8) are fewer and
        # narrower than value heads (4 of 12), as in the real ones; untied.
        "qwen3_5": (transformers.Qwen3_5Config(
            text_config=dict(
                model_type="qwen3_5_text", vocab_size=v_bl, num_hidden_layers=4,
                layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
                linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=12,
                linear_num_key_heads=2, linear_num_value_heads=4,
                rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                                 "mrope_section": [1, 1, 0], "mrope_interleaved": True},
                tie_word_embeddings=False, **bl_ids, **COMMON),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                               num_position_embeddings=16),
            tie_word_embeddings=False), "bl-nobos", "f32", "v5"),
        # Apertus 1.5's language model (released inside a wrapper with image and audio
        # tokenizers, `apertus1p5`, which tests/parity.rs rebuilds from this one): Apertus, with
        # an input vocabulary larger than the text's (800: the multimodal codes follow the text
        # ids) and the output head pruned to the text's 768 (`output_vocab_size`); untied.
        "apertus1p5": (transformers.Apertus1p5TextConfig(
            vocab_size=v_bl + 32, output_vocab_size=v_bl, num_hidden_layers=2, hidden_act="xielu",
            rope_parameters={"rope_type": "llama3", "rope_theta": 12000000.0, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
            tie_word_embeddings=False, **bl_ids, **COMMON), "bl-bos", "f32", "v5"),
        # Granite SWA ("granite-swash"): Granite's four multipliers, a window of 4 on all but every
        # fourth layer (0 is full), a learned sink per head (transformers scales the output by
        # σ(logsumexp − sink), which is a softmax with one more, empty, key), and a rotary base
        # per layer, 0 for none (NoPE); tied.
        "granite_swa": (transformers.GraniteSWAConfig(
            vocab_size=v_bl, num_hidden_layers=4, sliding_window=4, embedding_multiplier=12.0,
            attention_multiplier=0.05, residual_multiplier=0.22, logits_scaling=8.0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            layer_rope_theta=[10000.0, 0, 500000.0, 10000.0], tie_word_embeddings=True, **bl_ids,
            **{**COMMON, "rms_norm_eps": 1e-5}), "bl-bos", "f32", "v5"),
        # LFM2 (Liquid AI): layers 0 and 2 mix tokens with a short convolution (B·x over 3 tokens,
        # gated by C), 1 and 3 with attention (per-head q/k norms); its own names (operator_norm,
        # ffn_norm, feed_forward.w1/w3/w2, out_proj, the final norm `embedding_norm`); d_ff from
        # the block arithmetic: int(2·192/3) = 128, × 1.1 = 140, up to a multiple of 32 = 160; tied.
        "lfm2": (transformers.Lfm2Config(
            vocab_size=v_bl, hidden_size=64, intermediate_size=192, block_auto_adjust_ff_dim=True,
            block_ffn_dim_multiplier=1.1, block_multiple_of=32, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2, norm_eps=1e-5,
            layer_types=["conv", "full_attention", "conv", "full_attention"], conv_L_cache=3,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
            **bl_ids), "bl-bos", "f32", "v5"),
        # LFM3 (Liquid AI): LFM2's short convolutions (over 7 tokens) beside sliding attention
        # (window 4, rotary θ 1e4) and full attention ("proportional" rotary: θ 1e6 frequencies
        # over the whole head for its first half of pairs, none for the rest), Qwen3's attention
        # names with a sigmoid gate per head from the layer input (`g_proj`), norms before and
        # after each part (sandwich); tied.
        "lfm3": (transformers.Lfm3Config(
            vocab_size=v_bl, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=512, initializer_range=0.2, norm_eps=1e-5,
            layer_types=["conv", "sliding_attention", "full_attention", "conv"], sliding_window=4,
            tie_word_embeddings=True, **bl_ids), "bl-bos", "f32", "v5"),
        # OLMo Hybrid (AllenAI): OLMo 3's attention layers (norms after each part, q/k norms over
        # all heads) in layers 1 and 3, Gated DeltaNet layers (norms before each part; q, k, v,
        # a, b and the output gate `g_proj` projected apart, β doubled so that eigenvalues may
        # turn negative, the gated output norm at eps 1e-5) in 0 and 2; rotary here (θ 5e5),
        # where the released checkpoints have none; untied.
        "olmo_hybrid": (transformers.OlmoHybridConfig(
            vocab_size=v_bl, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2, rms_norm_eps=1e-6,
            layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
            linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=12,
            linear_conv_kernel_dim=4, linear_allow_neg_eigval=True,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
            tie_word_embeddings=False, **bl_ids), "bl-nobos", "f32", "v5"),
        # Qwen3.5-MoE as released: `qwen3_5`'s mixers and norms, and in every layer 8 experts of
        # 12 (2 per token, always renormalized) plus a shared expert of 32 scaled by
        # sigmoid(shared_expert_gate·h), as Qwen2-MoE's; untied.
        "qwen3_5_moe": (transformers.Qwen3_5MoeConfig(
            text_config=dict(
                model_type="qwen3_5_moe_text", vocab_size=v_bl, num_hidden_layers=4,
                layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
                linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=12,
                linear_num_key_heads=2, linear_num_value_heads=4,
                num_experts=8, num_experts_per_tok=2, moe_intermediate_size=12,
                shared_expert_intermediate_size=32,
                rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                                 "mrope_section": [1, 1, 0], "mrope_interleaved": True},
                tie_word_embeddings=False, **bl_ids,
                **{k: v for k, v in COMMON.items() if k != "intermediate_size"}),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                               num_position_embeddings=16),
            tie_word_embeddings=False), "bl-nobos", "f32", "v5"),
    }

# Each tiny model's seed, SEED + offset (weights from SEED + 100 + offset): the offsets the
# committed fixtures were made with, so that a rerun reproduces them whatever the order of
# tiny_specs. Two models sharing an offset is harmless (their shapes differ); a new model takes
# a number not used yet (49 next).
SEED_OFFSETS = {
    "llama": 0, "mistral": 1, "qwen2": 2, "qwen3": 3, "gemma2": 4, "gemma3": 5, "gemma": 6, "olmo2": 7,
    "phi3": 8, "olmo": 9, "gpt_neox": 10, "falcon": 11, "falcon_7b": 12, "xglm": 10, "stablelm": 10,
    "phi4_mini": 9, "smollm3": 9, "granite": 10, "cohere": 11, "gpt2": 12, "bloom": 13, "cohere2": 14,
    "olmo3": 15, "apertus": 23, "llama_bias": 24, "jais2": 25, "nemotron": 26, "olmoe": 27, "qwen3_moe": 28,
    "mixtral": 29, "glm": 30, "glm4": 31, "qwen2_moe": 32, "exaone4": 33, "helium": 34, "arcee": 35,
    "ministral3": 36, "mistral3": 37, "gpt_oss": 38, "granitemoe": 39, "qwen3_5": 40,
    "qwen3_5_moe": 43, "apertus1p5": 44, "granite_swa": 45,
    "lfm2": 46, "lfm3": 47, "olmo_hybrid": 48, "gemma4": 49,
    "gemma4_moe": 50,
}

MOE = {"olmoe", "qwen3_moe", "mixtral", "qwen2_moe", "gpt_oss", "granitemoe", "qwen3_5_moe",
       "gemma4_moe"}


def init_weights(model: torch.nn.Module, seed: int, gemma_norm: bool, small=()) -> None:
    """Deterministic weights large enough for meaningful activations.

    Matrices ~ N(0, 0.2^2) except o_proj/down_proj ~ N(0, 0.07^2) (keeps the residual stream
    moderate, |h| < ~10, so that 1e-4 absolute tolerances stay meaningful); biases ~ N(0, 0.5^2); RMSNorm weights ~ U(0.6, 1.4) (Llama-style
    x*w), or U(-0.4, 0.4) for Gemma's x*(1+w)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or ".ln_" in name:
                # Qwen3.5's gated norm in its linear attention is `x·w` among `1 + w` norms.
                plain = not gemma_norm or name.endswith("linear_attn.norm.weight")
                lo, hi = (0.6, 1.4) if plain else (-0.4, 0.4)
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float32) * (hi - lo) + lo)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.5)
            elif name.endswith(small) or name.endswith(("o_proj.weight", "down_proj.weight", "c_proj.weight",
                                "self_attention.dense.weight", "dense_4h_to_h.weight", "experts.down_proj",
                                "linear_attn.out_proj.weight")):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.07)
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.2)


def tidy_tokenizer_config(folder: Path) -> None:
    """Drop the loader-state keys that save_pretrained copies from the last from_pretrained."""
    p = folder / "tokenizer_config.json"
    j = json.loads(p.read_text())
    for k in ("is_local", "local_files_only", "_commit_hash"):
        j.pop(k, None)
    p.write_text(json.dumps(j, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def rewrite_config_legacy(folder: Path, name: str, cfg) -> None:
    """Rewrite rope_parameters into the pre-v5 keys that most hub checkpoints carry."""
    p = folder / "config.json"
    j = json.loads(p.read_text())
    rp = j.pop("rope_parameters")
    if name == "gemma":
        # The released Gemma 1 configs say "gelu", which transformers reads as the tanh GELU.
        j["hidden_act"] = "gelu"
    if name == "phi3":
        # Phi-3's hub configs: rope_scaling {"type": "longrope", ...}, original_max at the top.
        rp = dict(rp)
        j["rope_theta"] = rp.pop("rope_theta")
        j["original_max_position_embeddings"] = rp.pop("original_max_position_embeddings")
        rp["type"] = rp.pop("rope_type")
        j["rope_scaling"] = rp
    elif name == "olmo3":
        # The released configs: one rope_theta, rope_scaling for the global layers.
        full = dict(rp["full_attention"])
        j["rope_theta"] = full.pop("rope_theta")
        j["rope_scaling"] = full
    elif name.startswith("gemma4"):
        # The released configs: the global layers' heads as two fields, not transformers' own
        # per_layer_config of every global layer; rope_parameters as they are.
        j["rope_parameters"] = rp
        overrides = j.pop("per_layer_config")
        first_global = next(iter(overrides.values()))
        j["global_head_dim"] = first_global["head_dim"]
        j["num_global_key_value_heads"] = first_global["num_key_value_heads"]
    elif name == "gemma3":
        j["rope_theta"] = rp["full_attention"]["rope_theta"]
        j["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
        j["rope_scaling"] = None
        j["sliding_window_pattern"] = 4
        j.pop("_sliding_window_pattern", None)
    else:
        rp = dict(rp)
        j["rope_theta"] = rp.pop("rope_theta")
        if name == "nemotron":
            j["partial_rotary_factor"] = rp.pop("partial_rotary_factor")
        if rp.get("rope_type", "default") == "default":
            j["rope_scaling"] = None
        else:
            j["rope_scaling"] = rp
    p.write_text(json.dumps(j, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# 2d. Capture and pooling
# --------------------------------------------------------------------------------------------
def decoder_layers(model):
    if hasattr(model, "gpt_neox"):
        return model.gpt_neox.layers
    if hasattr(model, "model") and hasattr(model.model, "language_model"):
        return model.model.language_model.layers  # vision wrappers (Mistral 3)
    return model.model.layers if hasattr(model, "model") else model.transformer.h


def mlp_of(layer):
    """The module holding the MLP's projections (XGLM keeps them on the layer itself, Granite
    MoE names its mixture `block_sparse_moe`, LFM2 its MLP `feed_forward`)."""
    for name in ("mlp", "block_sparse_moe", "feed_forward"):
        if hasattr(layer, name):
            return getattr(layer, name)
    return layer


def act_fn(mlp):
    """The MLP's activation module (Phi-3 names it `activation_fn`, GPT-2 `act`)."""
    for name in ("act_fn", "activation_fn", "act", "gelu_impl"):
        if hasattr(mlp, name):
            return getattr(mlp, name)
    raise AttributeError(f"no activation in {type(mlp).__name__}")


def run_capture(model, ids: list[int]):
    """One sentence, batch 1. Returns dict of per-token tensors (float64 copies) and logits."""
    layers = decoder_layers(model)
    L = len(layers)
    st = {"g": [None] * L, "a": [None] * L, "u": [None] * L, "h": [None] * L, "r": [None] * L}
    hooks = []

    def keep(key, i):
        def fn(_m, _inp, out):
            t = out[0] if isinstance(out, tuple) else out
            st[key][i] = t.detach()[0].to(torch.float64).clone()
        return fn

    def keep_ones(key, i):
        def fn(_m, _inp, out):
            st[key][i] = torch.ones_like(out.detach()[0], dtype=torch.float64)
        return fn

    def keep_halves(i):
        # Phi-3's fused gate_up_proj: gate is the first half of its output, up the second.
        def fn(_m, _inp, out):
            gate, up = out.detach()[0].chunk(2, dim=-1)
            st["g"][i] = gate.to(torch.float64).clone()
            st["u"][i] = up.to(torch.float64).clone()
        return fn

    def keep_silu(i):
        # LFM2 calls F.silu on w1's output, in the model's dtype: no module to hook.
        def fn(_m, _inp, out):
            st["a"][i] = torch.nn.functional.silu(out.detach()[0]).to(torch.float64).clone()
        return fn

    moe_inputs = {}

    def keep_moe(i):
        # The experts' inputs: the MLP's normed input and each token's chosen experts.
        def fn(_m, args, kwargs):
            moe_inputs[i] = [a.detach() for a in args] + [kwargs[k].detach() for k in
                                                         ("top_k_index", "top_k_weights") if k in kwargs]
        return fn

    def keep_router(i):
        def fn(_m, _inp, out):
            st["r"][i] = out[0].detach().to(torch.float64).clone()  # [T, experts] logits
        return fn

    def keep_router_probs(i):
        def fn(_m, _inp, out):
            st["r"][i] = out[0].detach().to(torch.float64).log()  # [T, experts] probabilities
        return fn

    for i, layer in enumerate(layers):
        mlp = mlp_of(layer)
        if hasattr(layer, "experts") and hasattr(layer, "router"):
            # Gemma 4's mixture beside the dense MLP (hooked below as any MLP): the experts'
            # inputs, and the router's probabilities as logits (their log: the same softmax).
            hooks.append(layer.experts.register_forward_pre_hook(keep_moe(i), with_kwargs=True))
            hooks.append(layer.router.register_forward_hook(keep_router_probs(i)))
        if hasattr(mlp, "experts"):
            hooks.append(mlp.experts.register_forward_pre_hook(keep_moe(i), with_kwargs=True))
            hooks.append(router_of(mlp).register_forward_hook(keep_router(i)))
            hooks.append(layer.register_forward_hook(keep("h", i)))
            continue
        if hasattr(mlp, "w1"):
            # LFM2: down(silu(w1(h)) · w3(h)), names of its own.
            hooks.append(mlp.w1.register_forward_hook(keep("g", i)))
            hooks.append(mlp.w3.register_forward_hook(keep("u", i)))
            hooks.append(mlp.w1.register_forward_hook(keep_silu(i)))
            hooks.append(layer.register_forward_hook(keep("h", i)))
            continue
        fc_in = next((getattr(mlp, n) for n in ("c_fc", "dense_h_to_4h", "fc1") if hasattr(mlp, n)), None)
        if fc_in is None and not hasattr(mlp, "gate_proj") and hasattr(mlp, "up_proj"):
            fc_in = mlp.up_proj  # Apertus: down(xIELU(up(h)))
        if fc_in is not None:
            # GPT-2's, BLOOM's, XGLM's and Apertus' MLPs are not gated: the neurons are
            # act(fc_in(h)); up is 1 (METHOD §1).
            hooks.append(fc_in.register_forward_hook(keep("g", i)))
            hooks.append(fc_in.register_forward_hook(keep_ones("u", i)))
        elif hasattr(mlp, "gate_up_proj"):
            hooks.append(mlp.gate_up_proj.register_forward_hook(keep_halves(i)))
        else:
            hooks.append(mlp.gate_proj.register_forward_hook(keep("g", i)))
            hooks.append(mlp.up_proj.register_forward_hook(keep("u", i)))
        hooks.append(act_fn(mlp).register_forward_hook(keep("a", i)))
        hooks.append(layer.register_forward_hook(keep("h", i)))
    try:
        x = torch.tensor([ids], dtype=torch.long)
        out = model(input_ids=x, output_hidden_states=True, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    for i, inputs in moe_inputs.items():
        moe_neurons(st, i, layers[i], inputs)
    hs = [out.hidden_states[0][0].to(torch.float64)] + st["h"]
    # Sanity: transformers' hidden_states[1..L-1] are the raw decoder-layer outputs; [L] is normed.
    for i in range(1, L):
        assert torch.equal(out.hidden_states[i][0].to(torch.float64), hs[i]), f"hidden state {i} differs"
    assert len(out.hidden_states) == L + 1
    for i in range(L):
        if i in moe_inputs or hasattr(mlp_of(layers[i]), "w1"):
            continue
        dt = model.dtype
        ref = act_fn(mlp_of(layers[i]))(st["g"][i].to(dt)).to(torch.float64)
        assert torch.equal(ref, st["a"][i]), "act_fn hook mismatch"
    margins = [router_margin(st["r"][i], top_k_of(layers[i])) for i in moe_inputs]
    return {
        "router_margin": min(margins) if margins else math.inf,
        "g": torch.stack(st["g"]),  # [L, T, d_ff]
        "a": torch.stack(st["a"]),
        "u": torch.stack(st["u"]),
        "h": torch.stack(hs),  # [L+1, T, d]
        "logits": out.logits[0].to(torch.float64),  # [T, V]
    }


def router_of(mlp):
    """A mixture's router: `gate` in most families, `router` in gpt-oss."""
    return mlp.router if hasattr(mlp, "router") else mlp.gate


def experts_of(layer):
    """A layer's experts: on the layer itself beside its MLP (Gemma 4), else in its MLP."""
    return layer.experts if hasattr(layer, "experts") else mlp_of(layer).experts


def top_k_of(layer):
    """How many experts each token of a mixture layer goes to."""
    if hasattr(layer, "router") and hasattr(layer, "experts"):
        return layer.router.config.top_k_experts  # Gemma 4
    return router_of(mlp_of(layer)).top_k


def moe_neurons(st, i, layer, inputs):
    """Every expert's neurons at every token of layer i, as transformers' eager expert loop
    computes them for the tokens routed to the expert: a, gate and up are 0 elsewhere (gate is
    +inf there, so that min |gate| only counts the tokens an expert saw)."""
    x, top_k_index = inputs[0], inputs[1]
    experts = experts_of(layer)
    E = experts.num_experts
    f = getattr(experts, "intermediate_dim", None) or experts.intermediate_size
    T = x.shape[0]
    g = torch.full((T, E * f), math.inf, dtype=torch.float64)
    a = torch.zeros((T, E * f), dtype=torch.float64)
    u = torch.zeros((T, E * f), dtype=torch.float64)
    for e in range(E):
        tokens = (top_k_index == e).any(dim=-1).nonzero().flatten()
        if len(tokens) == 0:
            continue
        cols = slice(e * f, (e + 1) * f)
        if hasattr(experts, "gate_up_proj_bias"):
            # gpt-oss: `[d_model, 2·d_ff]` plus a bias, gate and up interleaved, and the clamped
            # SwiGLU: the neurons are g·σ(α·g) of the clamped gate, what they multiply is the
            # clamped up plus 1 (so that a·u is what goes down, as `_apply_gate` computes it).
            gate_up = x[tokens] @ experts.gate_up_proj[e] + experts.gate_up_proj_bias[e]
            gate, up = gate_up[..., ::2], gate_up[..., 1::2]
            clamped = gate.clamp(min=None, max=experts.limit)
            act = clamped * torch.sigmoid(clamped * experts.alpha)
            times = up.clamp(min=-experts.limit, max=experts.limit) + 1
            assert torch.equal(times * act, experts._apply_gate(gate_up)), "clamped SwiGLU mismatch"
        else:
            gate, up = torch.nn.functional.linear(x[tokens], experts.gate_up_proj[e]).chunk(2, dim=-1)
            act, times = experts.act_fn(gate), up
        g[tokens, cols] = gate.to(torch.float64)
        a[tokens, cols] = act.to(torch.float64)
        u[tokens, cols] = times.to(torch.float64)
    shared = getattr(mlp_of(layer), "shared_expert", None)
    if shared is not None:
        # Qwen2-MoE's shared expert runs on every token; its neurons follow the experts'.
        gate, up = shared.gate_proj(x), shared.up_proj(x)
        g = torch.cat([g, gate.to(torch.float64)], dim=-1)
        a = torch.cat([a, shared.act_fn(gate).to(torch.float64)], dim=-1)
        u = torch.cat([u, up.to(torch.float64)], dim=-1)
    if hasattr(layer, "experts"):
        # Gemma 4's dense MLP beside the mixture (hooked as any MLP): its neurons follow.
        g = torch.cat([g, st["g"][i]], dim=-1)
        a = torch.cat([a, st["a"][i]], dim=-1)
        u = torch.cat([u, st["u"][i]], dim=-1)
    st["g"][i], st["a"][i], st["u"][i] = g, a, u


def moe_neurons_per_layer(cfg):
    """Every expert's neurons (None for a dense model)."""
    experts = getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts", None)
    if not experts:
        return None
    shared = getattr(cfg, "shared_expert_intermediate_size", None) or 0
    if getattr(cfg, "enable_moe_block", False):
        shared = cfg.intermediate_size  # Gemma 4's dense MLP beside the mixture
    return experts * (getattr(cfg, "moe_intermediate_size", None) or cfg.intermediate_size) + shared


def router_margin(logits, k):
    """The smallest gap, over tokens, between the k-th and the (k+1)-th router probability: a
    token near 0 could be routed differently by another correct implementation."""
    probs = torch.softmax(logits.to(torch.float32), dim=-1).sort(dim=-1, descending=True).values
    return (probs[:, k - 1] - probs[:, k]).min().item()


def weights(T: int, kind: str) -> torch.Tensor:
    t = torch.arange(1, T + 1, dtype=torch.float64)
    if kind == "weighted":
        return t / (T * (T + 1) / 2)
    if kind == "mean":
        return torch.full((T,), 1.0 / T, dtype=torch.float64)
    if kind == "last":
        w = torch.zeros(T, dtype=torch.float64)
        w[-1] = 1.0
        return w
    raise ValueError(kind)


def pool(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [..., T, D], w [T] -> [..., D] float32 (accumulated in float64)."""
    return torch.einsum("...td,t->...d", x, w).to(torch.float32).contiguous()


def sentence_tensors(cap, ids, special_mask, full: bool, layers=None, hidden_idx=None,
                     sign_from_act: bool = False) -> dict:
    g, a, u, h = cap["g"], cap["a"], cap["u"], cap["h"]
    if layers is not None:
        g, a, u = g[layers], a[layers], u[layers]
    if hidden_idx is not None:
        h = h[hidden_idx]
    T = len(ids)
    nas = (a > 0).to(torch.float64)
    nav = a.abs()
    out = {}
    ww, wm, wl = weights(T, "weighted"), weights(T, "mean"), weights(T, "last")
    out["input_ids"] = torch.tensor(ids, dtype=torch.int64)
    out["nas_weighted"] = pool(nas, ww)
    out["nav_weighted"] = pool(nav, ww)
    out["gate_min_abs"] = g.abs().amin(dim=-2).to(torch.float32).contiguous()
    if sign_from_act:
        # xIELU is not positive exactly where its input is: NAS entries whose min_t |a| is
        # below GATE_EPS are not comparable either (a ~ 0.5·x near 0, steeper at its other root).
        out["act_min_abs"] = a.abs().amin(dim=-2).to(torch.float32).contiguous()
    out["hidden_weighted"] = pool(h, ww)
    out["hidden_last"] = pool(h, wl)
    if full:
        out["navup_weighted"] = pool((a * u).abs(), ww)
        out["nas_mean"] = pool(nas, wm)
        out["nav_mean"] = pool(nav, wm)
        out["nas_last"] = pool(nas, wl)
        out["nav_last"] = pool(nav, wl)
        out["hidden_mean"] = pool(h, wm)
        routed = torch.isfinite(g).to(torch.float64)  # a mixture's unrouted tokens have g = +inf
        if not bool(routed.all()):
            # The routed-tokens reading: each expert's neurons pooled over the tokens sent to it,
            # the weights renormalized over those (0 where a sentence sent it none).
            for kind, w in (("weighted", ww), ("mean", wm)):
                den = torch.einsum("ltd,t->ld", routed, w)
                for name, x in (("nas", nas), ("nav", nav)):
                    num = torch.einsum("ltd,t->ld", x * routed, w)
                    pooled = torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))
                    out[f"{name}_{kind}_routed"] = pooled.to(torch.float32).contiguous()
        keep = [i for i, s in enumerate(special_mask) if not s]
        if len(keep) < T:
            wk = weights(len(keep), "weighted")
            out["nas_weighted_nospecial"] = pool(nas[:, keep], wk)
            out["nav_weighted_nospecial"] = pool(nav[:, keep], wk)
    return out


def logprob_sum(cap, ids) -> torch.Tensor:
    lp = torch.log_softmax(cap["logits"], dim=-1)  # logits are f32 values, log-softmax in f64
    tgt = torch.tensor(ids[1:], dtype=torch.long)
    s = lp[:-1].gather(1, tgt[:, None]).sum()
    return torch.tensor([s.item()], dtype=torch.float32)


def encode(tok, text: str):
    enc = tok(text, return_special_tokens_mask=True)
    return list(enc["input_ids"]), list(enc["special_tokens_mask"])


def check_tokenizer_json(folder: Path, tok, sents, vocab_size: int) -> None:
    """tokenizer.json read by the plain `tokenizers` library must give the same ids."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert len(tok) == vocab_size == raw.get_vocab_size(), (folder.name, len(tok), vocab_size, raw.get_vocab_size())
    for s in sents:
        a = tok(s["text"])["input_ids"]
        b = raw.encode(s["text"], add_special_tokens=True).ids
        assert a == b, f"{folder.name}: transformers vs tokenizers.json mismatch on {s['text']!r}: {a} vs {b}"


def reference_for(model, tok, sents, name: str, extra_meta: dict, f64_model=None) -> tuple[dict, dict]:
    tensors = {}
    stats = {"max_abs_logprob": 0.0, "nas_flips": 0, "nas_flips_not_skipped": 0, "min_gate_abs": math.inf, "n_gate_below_eps": 0,
             "max_T": 0, "min_T": 10**9}
    any_special = False
    sign_from_act = getattr(model.config, "hidden_act", None) == "xielu"
    if sign_from_act:
        stats["nas_not_gate_sign"] = 0
    with torch.no_grad():
        for k, s in enumerate(sents):
            ids, smask = encode(tok, s["text"])
            any_special |= any(smask)
            cap = run_capture(model, ids)
            t = sentence_tensors(cap, ids, smask, full=True, sign_from_act=sign_from_act)
            if sign_from_act:
                stats["nas_not_gate_sign"] += int(((cap["a"] > 0) != (cap["g"] > 0)).sum())
            t["logprob_sum"] = logprob_sum(cap, ids)
            for key, v in t.items():
                tensors[f"s{k}.{key}"] = v
            T = len(ids)
            stats["max_T"], stats["min_T"] = max(stats["max_T"], T), min(stats["min_T"], T)
            if math.isfinite(cap["router_margin"]):  # mixtures only
                stats["min_router_margin"] = min(stats.get("min_router_margin", math.inf), cap["router_margin"])
            gmin = cap["g"].abs().amin(dim=1)
            if sign_from_act:
                gmin = torch.minimum(gmin, cap["a"].abs().amin(dim=1))
            stats["min_gate_abs"] = min(stats["min_gate_abs"], gmin.min().item())
            stats["n_gate_below_eps"] += int((gmin < GATE_EPS).sum())
            if f64_model is not None:
                c64 = run_capture(f64_model, ids)
                t64 = sentence_tensors(c64, ids, smask, full=True, sign_from_act=sign_from_act)
                for key in t:
                    if key in ("input_ids", "logprob_sum", "gate_min_abs", "act_min_abs") or key.startswith("nas"):
                        continue
                    sk = "f64_dev_" + key
                    stats[sk] = max(stats.get(sk, 0.0), (t64[key] - t[key]).abs().max().item())
                flips = (c64["a"] > 0) != (cap["a"] > 0)  # [L, T, d_ff]
                stats["nas_flips"] += int(flips.sum())
                # every flip must sit in a neuron that the tests skip (min_t |g| < GATE_EPS)
                stats["nas_flips_not_skipped"] += int((flips.any(dim=1) & (gmin >= GATE_EPS)).sum())
                stats["max_abs_logprob"] = max(stats["max_abs_logprob"],
                                               abs(logprob_sum(c64, ids).item() - t["logprob_sum"].item()))
                stats["max_abs_hidden_per_token"] = max(stats.get("max_abs_hidden_per_token", 0.0),
                                                        (c64["h"] - cap["h"]).abs().max().item())
            stats["max_abs_hidden_value"] = max(stats.get("max_abs_hidden_value", 0.0), cap["h"].abs().max().item())
    cfg = text_config(model.config)
    meta = {
        "model": name,
        "n_layers": str(cfg.num_hidden_layers),
        "d_ff": str(moe_neurons_per_layer(cfg) or getattr(cfg, "intermediate_size", None)
                    or getattr(cfg, "n_inner", None) or 4 * cfg.hidden_size),
        "d_model": str(cfg.hidden_size),
        "n_sentences": str(len(sents)),
        "sentences": "tests/fixtures/sentences.json",
        "special_tokens": "tokenizer defaults (tokenizer(text), add_special_tokens=True)",
        "has_nospecial": "true" if any_special else "false",
        "hidden_states": "index 0 = embedding output (after any embedding scaling); index i>=1 = raw output of "
                         "decoder layer i-1 (residual stream); the last one is NOT passed through the final norm",
        "dtype": "float32",
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        **extra_meta,
    }
    return tensors, meta | {"stats_" + k: repr(v) for k, v in stats.items()}


def save_file(tensors: dict, path: str, metadata: dict) -> None:
    """safetensors.torch.save_file with a byte-reproducible header (metadata keys sorted; the
    library writes them in hash-map order)."""
    import struct

    blob = st_save(tensors, metadata=metadata)
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    new = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
    new.update(header)  # tensor entries keep the library's (data) order
    hb = json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hb)) + hb + blob[8 + n:])


def sizeof(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.1f} KiB"


# --------------------------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------------------------
def make_tokenizers():
    tdir = FIX / "tokenizers"
    tdir.mkdir(parents=True, exist_ok=True)
    train_sentencepiece(tdir / "sp_llama.model")
    sp_tok = build_llama_tokenizer(tdir / "sp_llama.model")
    bl_bos = build_bytelevel_tokenizer(add_bos=True)
    bl_nobos = build_bytelevel_tokenizer(add_bos=False)
    assert bl_bos.get_vocab() == bl_nobos.get_vocab()
    # Cross-check the converted SentencePiece tokenizer against sentencepiece itself.
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tdir / "sp_llama.model"))
    n_byte = 0
    for s in fixture_sentences():
        a = sp_tok(s["text"])["input_ids"]
        b = [sp.bos_id()] + sp.encode(s["text"])
        assert a == b, f"LlamaTokenizerFast != sentencepiece on {s['text']!r}:\n{a}\n{b}"
        n_byte += sum(1 for i in b if sp.is_byte(i))
    print(f"tokenizers: sp vocab {len(sp_tok)} (byte-fallback pieces used in fixture sentences: {n_byte}), "
          f"byte-level vocab {len(bl_bos)}")
    return sp_tok, bl_bos, bl_nobos


def text_config(cfg):
    """The language model's config (a vision wrapper's `text_config`)."""
    return getattr(cfg, "text_config", None) or cfg


def model_class(name):
    """The transformers class of a tiny model: the vision wrappers are not causal-LM classes."""
    if name == "mistral3":
        return transformers.Mistral3ForConditionalGeneration
    if name == "qwen3_5":
        return transformers.Qwen3_5ForConditionalGeneration
    if name == "qwen3_5_moe":
        return transformers.Qwen3_5MoeForConditionalGeneration
    return AutoModelForCausalLM


def split_olmo_hybrid_convs(folder: Path, cfg) -> None:
    """OLMo Hybrid's checkpoints keep a convolution each for q, k and v (`q_conv1d` of the key
    width, …), which transformers joins at load; its save splits the joined one in three equal
    parts instead. Split as released, so that the fixture is what a user's folder holds."""
    from safetensors.torch import load_file, save_file as save_tensors

    path = folder / "model.safetensors"
    tensors = load_file(path)
    kd = cfg.linear_num_key_heads * cfg.linear_key_head_dim
    vd = cfg.linear_num_value_heads * cfg.linear_value_head_dim
    for name in [n for n in tensors if n.endswith("linear_attn.q_conv1d.weight")]:
        stem = name[: -len("q_conv1d.weight")]
        parts = [tensors.pop(f"{stem}{p}_conv1d.weight") for p in "qkv"]
        q, k, v = torch.cat(parts, dim=0).split([kd, kd, vd], dim=0)
        for p, t in zip("qkv", (q, k, v)):
            tensors[f"{stem}{p}_conv1d.weight"] = t.contiguous()
    save_tensors(tensors, path, metadata={"format": "pt"})


def make_tiny(sp_tok, bl_bos, bl_nobos, sents, only=None):
    specs = tiny_specs(len(sp_tok), len(bl_bos))
    toks = {"sp": sp_tok, "bl-bos": bl_bos, "bl-nobos": bl_nobos}
    tok_desc = {
        "sp": "llama-style SentencePiece BPE + byte_fallback (tokenizers/sp_llama.model), converted by "
              "LlamaTokenizerFast(legacy=False); adds <s> (BOS) by default",
        "bl-bos": "byte-level BPE (Qwen2 pipeline, Llama-3 style BOS): TemplateProcessing adds <|begin_of_text|>",
        "bl-nobos": "byte-level BPE (Qwen style): adds no special token",
    }
    missing = set(specs) - set(SEED_OFFSETS)
    assert not missing, f"give {sorted(missing)} a seed in SEED_OFFSETS"
    for name, (cfg, tkind, wdtype, cfg_format) in specs.items():
        if only and name not in only:
            continue
        seed = SEED_OFFSETS[name]
        folder = TINY / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        torch.manual_seed(SEED + seed)
        cfg._attn_implementation = "eager"
        # transformers' reference loop over the experts, not its grouped matmuls.
        impl = {"experts_implementation": "eager"} if name in MOE else {}
        if name in ("mistral3", "qwen3_5", "qwen3_5_moe"):
            model = model_class(name)._from_config(
                cfg, attn_implementation="eager", dtype=torch.float32, **impl)
        else:
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32, **impl)
        # LFM2's output projections have names of their own; drawn small as the others'.
        small = ("out_proj.weight", "feed_forward.w2.weight") if name in ("lfm2", "lfm3") else ()
        # OLMo Hybrid's gated output norm is `x·w` as the others there.
        init_weights(model, SEED + 100 + seed,
                     gemma_norm=(name.startswith("gemma") and not name.startswith("gemma4")) or name in ("nemotron", "qwen3_5", "qwen3_5_moe"),
                     small=small)
        if name.startswith("gemma4"):
            # Gemma 4 scales each layer's output by a stored scalar (a buffer, which
            # init_weights leaves at 1): drawn here. Its attention does not scale the scores (q and k are normed instead): q and k
            # norms drawn smaller keep this random model's softmax from turning one-hot, where
            # transformers' own f32 run strays from its f64 one past the tests' tolerance.
            g = torch.Generator().manual_seed(SEED + 200 + seed)
            with torch.no_grad():
                for layer in decoder_layers(model):
                    layer.layer_scalar.copy_(torch.rand(1, generator=g) * 0.5 + 0.4)
                    for norm in ("q_norm", "k_norm"):
                        if hasattr(layer.self_attn, norm):
                            getattr(layer.self_attn, norm).weight.mul_(0.5)
                    if hasattr(layer, "router"):
                        # The router's input scale and each expert's output scale: positive,
                        # as trained ones are.
                        layer.router.scale.copy_(torch.rand(layer.router.scale.shape, generator=g) + 0.5)
                        layer.router.per_expert_scale.copy_(
                            torch.rand(layer.router.per_expert_scale.shape, generator=g) + 0.5)
        if wdtype == "bf16":
            model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
        elif wdtype == "f32-sharded":
            model.save_pretrained(folder, safe_serialization=True, max_shard_size="100KB")
        else:
            model.save_pretrained(folder, safe_serialization=True)
        if name == "olmo_hybrid":
            split_olmo_hybrid_convs(folder, text_config(cfg))
        toks[tkind].save_pretrained(folder)
        if name.startswith("qwen3_5"):
            # transformers rebuilds Qwen3.5's pipeline in its own class (NFC, a split that keeps
            # combining marks with their letters): saved from it, tokenizer.json says the same,
            # as the released one does.
            AutoTokenizer.from_pretrained(folder).save_pretrained(folder)
        tidy_tokenizer_config(folder)
        if cfg_format == "legacy":
            rewrite_config_legacy(folder, name, cfg)
        # Reference from exactly what is on disk, reloaded in float32.
        ref_model = model_class(name).from_pretrained(folder, dtype=torch.float32, attn_implementation="eager",
                                                         **impl).eval()
        ref_tok = AutoTokenizer.from_pretrained(folder)
        # The text's vocabulary: a pruned output head's (Apertus 1.5), else the embeddings'.
        text_vocab = getattr(text_config(cfg), "output_vocab_size", None) or text_config(cfg).vocab_size
        check_tokenizer_json(folder, ref_tok, sents, text_vocab)
        check_reload(model, ref_model, wdtype)
        f64 = model_class(name).from_pretrained(folder, dtype=torch.float64, attn_implementation="eager",
                                                   **impl).eval()
        # transformers' XGLM attention floors its scores with `torch.full((), finfo(dtype).min)`
        # and no dtype, which overflows the default float32 when the model runs in float64.
        default_dtype = torch.get_default_dtype()
        if name == "xglm":
            torch.set_default_dtype(torch.float64)
        try:
            tensors, meta = reference_for(ref_model, ref_tok, sents, name, {
                "tokenizer": tok_desc[tkind], "weights_on_disk": wdtype, "config_format": cfg_format}, f64_model=f64)
        finally:
            torch.set_default_dtype(default_dtype)
        if name in MOE:
            # Another correct implementation could route a token differently where two experts'
            # probabilities are this close (f32 logits of another matmul differ by ~1e-6); none of
            # the fixture's tokens comes near.
            margin = float(meta["stats_min_router_margin"])
            print(f"    smallest router margin {margin:.1e}")
            assert margin > 1e-5, f"{name}: a token's routing is a near tie ({margin:.1e})"
        if name == "apertus":
            # Else a NAS read from the sign of up(h) would pass the parity test.
            assert int(meta["stats_nas_not_gate_sign"]) > 0, "xIELU never positive below 0 here"
        if name in ("phi3", "phi4_mini"):
            # Longer sentences would switch transformers to the long factors, which we refuse.
            assert int(meta["stats_max_T"]) <= 512, f"a {name} fixture sentence is longer than original_max"
        sensitivity(name, ref_model, ref_tok, sents)
        save_file(tensors, str(folder / "reference.safetensors"), metadata=meta)
        dev = {k[len("stats_f64_dev_"):]: float(v) for k, v in meta.items() if k.startswith("stats_f64_dev_")}
        print(f"tiny/{name}: L={text_config(cfg).num_hidden_layers} V={text_config(cfg).vocab_size} T=[{meta['stats_min_T']},{meta['stats_max_T']}] "
              f"max|h| {float(meta['stats_max_abs_hidden_value']):.1f}; f32-vs-f64: worst pooled {max(dev.values()):.1e} "
              f"logprob {float(meta['stats_max_abs_logprob']):.1e} nas_flips {meta['stats_nas_flips']} "
              f"(not skipped: {meta['stats_nas_flips_not_skipped']}) "
              f"min|g| {float(meta['stats_min_gate_abs']):.1e} (<1e-5: {meta['stats_n_gate_below_eps']}); "
              f"ref {sizeof(folder / 'reference.safetensors')}")
        print("   ", {k: f"{v:.1e}" for k, v in dev.items()})


E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def mxfp4_quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., out, in] float → MXFP4 blocks [..., out, in/32, 16] and scales [..., out, in/32]
    (uint8), as gpt-oss' checkpoints store them: per 32 values of a row, the smallest power of
    two that brings the largest within E2M1's ±6 (biased by 127), each value rounded to the
    nearest E2M1 code, two codes to a byte, the first in the low nibble."""
    *prefix, out, width = w.shape
    groups = w.reshape(*prefix, out, width // 32, 32).to(torch.float64)
    amax = groups.abs().amax(dim=-1)
    exponent = torch.ceil(torch.log2(torch.clamp(amax, min=1e-30) / 6.0)).clamp(-127, 127)
    scaled = groups / torch.pow(2.0, exponent)[..., None]
    lut = torch.tensor(E2M1, dtype=torch.float64)
    codes = (scaled[..., None] - lut).abs().argmin(dim=-1).to(torch.uint8)  # ties: the lower code
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), (exponent + 127).to(torch.uint8).contiguous()


def make_gpt_oss_mxfp4(sents):
    """tiny/gpt_oss_mxfp4: tiny/gpt_oss with its experts in MXFP4 (`*_blocks`, `*_scales`) and
    a config as the released gpt-oss ones have it (`rope_scaling`, `quantization_config`); the
    reference is transformers' run of the checkpoint reloaded from these files (it expands
    MXFP4 on the CPU with `convert_moe_packed_tensors`)."""
    from safetensors.torch import load_file, save_file as save_tensors
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    src, folder = TINY / "gpt_oss", TINY / "gpt_oss_mxfp4"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(src / f, folder / f)
    state = load_file(str(src / "model.safetensors"))
    expanded = {}
    for name in [k for k in state if k.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        stored = state.pop(name)  # [experts, in, out]
        blocks, scales = mxfp4_quantize(stored.transpose(1, 2))
        state[f"{name}_blocks"], state[f"{name}_scales"] = blocks, scales
        expanded[name] = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
        assert expanded[name].shape == stored.shape
    save_tensors(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    j = json.loads((src / "config.json").read_text())
    rp = j.pop("rope_parameters")
    j["rope_theta"] = rp.pop("rope_theta")
    j["rope_scaling"] = rp
    # The released configs' clamp, which llama.cpp fixes for every gpt-oss GGUF (tiny/gpt_oss
    # has 2, so that its clamp binds): gguf/gpt_oss_mxfp4.gguf can then carry this model.
    j["swiglu_limit"] = 7.0
    j["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (folder / "config.json").write_text(json.dumps(j, indent=2, sort_keys=True) + "\n")

    impl = {"experts_implementation": "eager", "attn_implementation": "eager"}
    ref_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **impl).eval()
    loaded = dict(ref_model.named_parameters())
    for name, values in expanded.items():
        assert torch.equal(loaded[name].float(), values), f"{name}: transformers expands MXFP4 otherwise"
    f64 = copy_to_f64(ref_model)
    ref_tok = AutoTokenizer.from_pretrained(folder)
    tensors, meta = reference_for(ref_model, ref_tok, sents, "gpt_oss_mxfp4", {
        "tokenizer": "byte-level BPE (Qwen2 pipeline, Llama-3 style BOS), tiny/gpt_oss's",
        "weights_on_disk": "f32, experts in MXFP4", "config_format": "legacy"}, f64_model=f64)
    margin = float(meta["stats_min_router_margin"])
    assert margin > 1e-5, f"gpt_oss_mxfp4: a token's routing is a near tie ({margin:.1e})"
    save_file(tensors, str(folder / "reference.safetensors"), metadata=meta)
    print(f"tiny/gpt_oss_mxfp4: smallest router margin {margin:.1e}; {sizeof(folder / 'model.safetensors')}")


def copy_to_f64(model):
    """A float64 copy of a model, for the float32 noise statistics."""
    import copy
    return copy.deepcopy(model).to(torch.float64).eval()


def check_reload(model, ref_model, wdtype):
    sd0 = model.state_dict()
    sd1 = ref_model.state_dict()
    for k, v in sd1.items():
        if k not in sd0:
            continue
        v0 = sd0[k].to(torch.bfloat16).to(torch.float32) if wdtype == "bf16" else sd0[k].float()
        assert torch.equal(v0, v.float()), f"reloaded weight {k} differs"


def sensitivity(name, model, tok, sents):
    """Make sure the distinguishing features change the result on the fixture sentences."""
    import copy

    cfg = model.config
    variants = {}  # what → the config with the feature turned off
    zeroed = {}  # what → the parameters (by name ending) set to zero instead

    def vary(what, **changes):
        c = copy.deepcopy(cfg)
        for key, value in changes.items():
            # A vision wrapper's language model has its own config.
            setattr(text_config(c), key, value)
        variants[what] = c

    def default_rope(theta, **kept):
        return {"rope_type": "default", "rope_theta": theta, **kept}

    if name == "llama":
        vary("no llama3 rope scaling", rope_parameters=default_rope(500000.0))
    if name == "phi3":
        vary("no longrope scaling", rope_parameters=default_rope(10000.0))
    if name == "gpt_neox":
        vary("sequential residual", use_parallel_residual=False)
    if name == "xglm":
        vary("no embedding scale", scale_embedding=False)
    if name == "stablelm":
        vary("rotary on 8 of 16 dimensions",
             rope_parameters={**cfg.rope_parameters, "partial_rotary_factor": 0.5})
    if name == "olmo":
        vary("no clip_qkv", clip_qkv=None)
    if name == "phi4_mini":
        # Rotary over a quarter fewer dimensions than full: the same frequencies moved.
        vary("rotary on 8 of 16 dimensions",
             rope_parameters={**cfg.rope_parameters, "partial_rotary_factor": 0.5,
                              "short_factor": cfg.rope_parameters["short_factor"][:4],
                              "long_factor": cfg.rope_parameters["long_factor"][:4]})
    if name in ("glm", "glm4", "nemotron"):
        vary("rotary on all 16 dimensions",
             rope_parameters={**cfg.rope_parameters, "partial_rotary_factor": 1.0})
    if name == "qwen3_5":
        vary("rotary on all 16 dimensions",
             rope_parameters={**text_config(cfg).rope_parameters, "partial_rotary_factor": 1.0})
    if name == "llama_bias":
        # The same model without its output projection's bias (q/k/v keep theirs).
        zeroed["no o_proj bias"] = "o_proj.bias"
    if name == "cohere":
        vary("no logit_scale", logit_scale=1.0)
    if name == "smollm3":
        vary("rotary on the NoPE layer", no_rope_layers=[1] * cfg.num_hidden_layers)
    if name == "lfm3":
        full = text_config(cfg).rope_parameters["full_attention"]
        vary("rotary on every pair of the full layer",
             rope_parameters={**cfg.rope_parameters, "full_attention": {**full, "partial_rotary_factor": 1.0}})
        vary("no sliding window", sliding_window=100000)
        zeroed["no head gate (σ(0) = ½)"] = "self_attn.g_proj.weight"
    if name == "granite_swa":
        zeroed["sinks at 0"] = "self_attn.sinks"
        vary("no sliding window", sliding_window=100000)
        vary("one rotary base on every layer", layer_rope_theta=[10000.0] * cfg.num_hidden_layers)
    if name in ("granite", "granitemoe"):
        for key, neutral in [("embedding_multiplier", 1.0), ("attention_multiplier", 0.25),
                             ("residual_multiplier", 1.0), ("logits_scaling", 1.0)]:
            vary(f"no {key}", **{key: neutral})
    if name == "olmo3":
        vary("no yarn on the global layer",
             rope_parameters={"full_attention": default_rope(500000.0),
                              "sliding_attention": default_rope(500000.0)})
    if name == "ministral3":
        vary("no yarn", rope_parameters=default_rope(1000000.0, llama_4_scaling_beta=0.1,
                                                     original_max_position_embeddings=128))
    if name == "exaone4":
        vary("every layer global, with rotary", sliding_window=None,
             layer_types=["full_attention"] * cfg.num_hidden_layers)
    if name == "gpt_oss":
        zeroed["sinks at 0"] = "self_attn.sinks"
        zeroed["no router bias"] = "router.bias"
        zeroed["no expert biases"] = "_proj_bias"
        vary("no swiglu clamp", swiglu_limit=1e9)
        vary("no yarn", rope_parameters=default_rope(150000.0))
    if name in ("mistral", "gemma2", "gemma3", "phi3", "cohere2", "olmo3", "exaone4", "gpt_oss"):
        vary("no sliding window", sliding_window=100000)
    if name == "gemma2":
        vary("no attn softcap", attn_logit_softcapping=None)
        vary("no final softcap", final_logit_softcapping=None)
    if name == "gemma4":
        vary("no sliding window", sliding_window=100000)
        zeroed["no per-layer embeddings"] = "embed_tokens_per_layer.weight"
    if name == "gemma3":
        full = cfg.rope_parameters["full_attention"]
        vary("global rope base on local layers",
             rope_parameters={"full_attention": dict(full), "sliding_attention": dict(full)})
    for what, suffix in zeroed.items():
        m2 = copy.deepcopy(model).eval()
        with torch.no_grad():
            for n, p in m2.named_parameters():
                if n.endswith(suffix):
                    p.zero_()
        variants[what] = m2
    for what, c in variants.items():
        if isinstance(c, torch.nn.Module):
            m2 = c
        else:
            m2 = type(model)(c).eval()
            m2.load_state_dict(model.state_dict())
        worst = 0.0
        with torch.no_grad():
            for s in sents:
                ids, _ = encode(tok, s["text"])
                x = torch.tensor([ids])
                a = model(input_ids=x).logits
                b = m2(input_ids=x).logits
                worst = max(worst, (a - b).abs().max().item())
        print(f"  sensitivity {name}: {what}: max |Δlogit| = {worst:.3e}")
        assert worst > 1e-3, f"{name}: {what} does not matter on the fixture sentences"


# ---------------------------------------------------------------- 2e. demo (real weights)
DEMO_LAYERS = [0, 15, 29]
DEMO_HIDDEN = [0, 15, 30]


def smollm_reference_pretokenizer(tok):
    """llama.cpp's 'smollm' pre-tokenizer = digits split individually, then GPT-2 byte-level regex."""
    import copy
    from tokenizers import pre_tokenizers

    t2 = copy.deepcopy(tok)
    t2.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return t2


def make_demo(gguf_path: Path):
    out_dir = FIX / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    sents, source = demo_sentences()
    (out_dir / "sentences.json").write_text(json.dumps(sents, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    d, f = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager").eval()
    cfg = model.config
    assert cfg.num_hidden_layers == 30 and cfg.intermediate_size == 1536 and cfg.hidden_size == 576
    alt = smollm_reference_pretokenizer(tok)
    tensors = {}
    stats = {"nas_flips_sel": 0, "nas_flips_sel_not_skipped": 0, "max_gate_of_flip": 0.0,
             "n_gate_below_eps_sel": 0, "min_gate_abs_sel": math.inf, "max_abs_logprob": 0.0,
             "pretokenizer_mismatches": 0, "max_T": 0, "f64_sentences": 0}
    # f32-vs-f64 comparison (slow): every 10th sentence by default, all with NEURONXA_FIXTURES_F64=all,
    # none with NEURONXA_FIXTURES_F64=none.
    f64_mode = os.environ.get("NEURONXA_FIXTURES_F64", "some")
    f64 = None
    if f64_mode != "none":
        f64 = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float64, attn_implementation="eager").eval()
    with torch.no_grad():
        for k, s in enumerate(sents):
            ids, smask = encode(tok, s["text"])
            if alt(s["text"])["input_ids"] != ids:
                stats["pretokenizer_mismatches"] += 1
            stats["max_T"] = max(stats["max_T"], len(ids))
            cap = run_capture(model, ids)
            t = sentence_tensors(cap, ids, smask, full=False, layers=DEMO_LAYERS, hidden_idx=DEMO_HIDDEN)
            # gate_min_abs stored as float16 to keep the file near 6 MB (it is only thresholded).
            t["gate_min_abs"] = t["gate_min_abs"].to(torch.float16)
            if k % 10 == 0:
                t["logprob_sum"] = logprob_sum(cap, ids)
            for key, v in t.items():
                tensors[f"s{k}.{key}"] = v
            gsel = cap["g"][DEMO_LAYERS].abs().amin(dim=1)  # [3, d_ff]
            stats["min_gate_abs_sel"] = min(stats["min_gate_abs_sel"], gsel.min().item())
            stats["n_gate_below_eps_sel"] += int((gsel < GATE_EPS).sum())
            if f64 is not None and (f64_mode == "all" or k % 10 == 0):
                stats["f64_sentences"] += 1
                c64 = run_capture(f64, ids)
                t64 = sentence_tensors(c64, ids, smask, full=False, layers=DEMO_LAYERS, hidden_idx=DEMO_HIDDEN)
                for key in ("nav_weighted", "hidden_weighted", "hidden_last"):
                    dev = (t64[key] - t[key]).abs()  # [3, D]
                    scale = t64[key].abs().amax(dim=-1, keepdim=True)
                    stats["f64_dev_" + key] = max(stats.get("f64_dev_" + key, 0.0), dev.max().item())
                    stats["f64_reldev_" + key] = max(stats.get("f64_reldev_" + key, 0.0), (dev / scale).max().item())
                flips = ((c64["a"][DEMO_LAYERS] > 0) != (cap["a"][DEMO_LAYERS] > 0)).any(dim=1)  # [3, d_ff]
                stats["nas_flips_sel"] += int(flips.sum())
                stats["nas_flips_sel_not_skipped"] += int((flips & (gsel >= GATE_EPS)).sum())
                if flips.any():
                    stats["max_gate_of_flip"] = max(stats["max_gate_of_flip"], gsel[flips].max().item())
                stats["max_abs_nav_per_token_all_layers"] = max(
                    stats.get("max_abs_nav_per_token_all_layers", 0.0), (c64["a"] - cap["a"]).abs().max().item())
                if k % 10 == 0:
                    stats["max_abs_logprob"] = max(stats["max_abs_logprob"],
                                                   abs(logprob_sum(c64, ids).item() - t["logprob_sum"].item()))
            stats["max_abs_hidden_value_sel"] = max(stats.get("max_abs_hidden_value_sel", 0.0),
                                                    cap["h"][DEMO_HIDDEN].abs().max().item())
    meta = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (dequantized by transformers/gguf-py)",
        "n_layers": "30", "d_ff": "1536", "d_model": "576", "n_sentences": str(len(sents)),
        "sentences": "tests/fixtures/demo/sentences.json", "sentence_source": source,
        "layers": json.dumps(DEMO_LAYERS), "hidden_indices": json.dumps(DEMO_HIDDEN),
        "logprob_sentences": json.dumps(list(range(0, len(sents), 10))),
        "special_tokens": "tokenizer defaults (this GGUF: add_bos_token=false, so none are added)",
        "hidden_states": "index 0 = embedding output; index i>=1 = raw output of decoder layer i-1; index 30 is "
                         "NOT passed through the final norm",
        "gate_min_abs_dtype": "float16",
        "transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
    } | {"stats_" + k: repr(v) for k, v in stats.items()}
    path = out_dir / "reference.safetensors"
    save_file(tensors, str(path), metadata=meta)
    print(f"demo: {len(sents)} sentences from {source}; max T {stats['max_T']}; {sizeof(path)}; stats {stats}")


# ---------------------------------------------------------------- 2f. llama GGUF (SentencePiece)
def permute_qk(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half -> GGUF interleaved)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def add_sentencepiece_vocab(w, vocab_size: int):
    """The tiny llama's SentencePiece vocabulary, as convert_hf_to_gguf.py's
    _create_vocab_sentencepiece writes it."""
    import gguf
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(FIX / "tokenizers" / "sp_llama.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            tt = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            tt = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            tt = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            tt = gguf.TokenType.BYTE
        else:
            tt = gguf.TokenType.NORMAL
        types.append(tt)
    assert len(tokens) == vocab_size
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def write_gguf(w) -> None:
    """Header, metadata and tensors of a GGUFWriter, in the order gguf-py needs them."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def load_gguf(folder: Path, dtype=torch.float32):
    """The tokenizer and model transformers builds from `folder/model.gguf` (eager attention)."""
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file="model.gguf")
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file="model.gguf", dtype=dtype,
                                                 attn_implementation="eager").eval()
    return tok, model


def make_llama_gguf(sp_tok, sents):
    import gguf
    import sentencepiece as spm

    folder = TINY / "llama_gguf"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    base_cfg, _, _, _ = tiny_specs(len(sp_tok), 768)["llama"]
    cfg = transformers.LlamaConfig(**{k: v for k, v in base_cfg.to_dict().items()
                                      if k not in ("rope_parameters", "rope_scaling", "rope_theta", "dtype",
                                                   "transformers_version", "architectures", "model_type")},
                                   rope_theta=500000.0)
    assert cfg.rope_parameters.get("rope_type", "default") == "default"
    seed = SEED_OFFSETS["llama"]  # the weights of tiny/llama, in f32 (not bf16-rounded)
    torch.manual_seed(SEED + seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    init_weights(model, SEED + 100 + seed, gemma_norm=False)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}

    path = folder / "model.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("neuronxa tiny llama_gguf")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.head_dim)
    add_sentencepiece_vocab(w, cfg.vocab_size)

    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    quantized = []

    def put(name, arr, q8=False):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if q8:
            data = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantized.append(name)
        else:
            w.add_tensor(name, arr)

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        put(f"blk.{i}.attn_q.weight", permute_qk(sd[p + "self_attn.q_proj.weight"], nh, nh))
        put(f"blk.{i}.attn_k.weight", permute_qk(sd[p + "self_attn.k_proj.weight"], nh, nkv))
        put(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        put(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        put(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        put(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"], q8=True)
        put(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"], q8=True)
        put(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"], q8=True)
    put("output_norm.weight", sd["model.norm.weight"])
    assert cfg.tie_word_embeddings  # tied: no output.weight, as llama.cpp writes it
    write_gguf(w)
    tok, gm = load_gguf(folder)
    # The GGUF round trip must give the original weights back (F32 exactly; Q8_0 within its step).
    gsd = gm.state_dict()
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        if "mlp." in k:
            assert (gsd[k] - v).abs().max().item() < 0.01, k
        else:
            assert torch.equal(gsd[k], v), f"GGUF round trip changed {k}"
    mism = [s["text"] for s in sents if tok(s["text"])["input_ids"] != sp_tok(s["text"])["input_ids"]]
    assert not mism, f"GGUF tokenizer differs from tiny/llama tokenizer.json on {mism}"
    _, f64 = load_gguf(folder, dtype=torch.float64)
    tensors, meta = reference_for(gm, tok, sents, "llama_gguf", {
        "tokenizer": "from the GGUF (tokenizer.ggml.model=llama, add_bos_token=true), as transformers builds it",
        "weights_on_disk": "GGUF: F32 except Q8_0 for " + ",".join(quantized),
        "quantized_tensors": ",".join(quantized)}, f64_model=f64)
    save_file(tensors, str(folder / "reference.safetensors"), metadata=meta)
    print(f"tiny/llama_gguf: {sizeof(path)} gguf, Q8_0: {len(quantized)} tensors; ref {sizeof(folder / 'reference.safetensors')}")


# ---------------------------------------------------------------- 2g. storage types candle lacks
# The i-quants, ternary and FP4 types src/engine/quants reads itself. gguf-py has no quantizer for
# most of them, so the blocks are random bytes with their scale fields set to chosen values; what
# they decode to, by gguf-py (the code transformers' GGUF loader runs), is the reference.
OWN_QUANTS = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS",
              "TQ1_0", "TQ2_0", "MXFP4", "NVFP4"]
# Where each type keeps its f16 block scale (IQ1_M spreads it over four nibbles; MXFP4 and NVFP4
# have power-of-two and E4M3 scales instead).
F16_SCALE_AT = {"IQ2_XXS": 0, "IQ2_XS": 0, "IQ2_S": 0, "IQ3_XXS": 0, "IQ3_S": 0, "IQ1_S": 0, "IQ4_NL": 0,
                "IQ4_XS": 0, "TQ1_0": 52, "TQ2_0": 64}


def random_blocks(name: str, n_blocks: int, rng, scale: np.ndarray) -> np.ndarray:
    """n_blocks random blocks of type `name` whose block scales are `scale` (one per block)."""
    import gguf
    qtype = gguf.GGMLQuantizationType[name]
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if name in F16_SCALE_AT:
        at = F16_SCALE_AT[name]
        blocks[:, at:at + 2] = scale.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    elif name == "IQ1_M":
        bits = scale.astype(np.float16).view(np.uint16).reshape(n_blocks, 1)
        nibbles = ((bits >> np.array([0, 4, 8, 12], dtype=np.uint16)) & 0xF) << 12
        words = blocks[:, 48:56].copy().view(np.uint16) & np.uint16(0x0FFF)
        blocks[:, 48:56] = (words | nibbles.astype(np.uint16)).view(np.uint8)
    elif name == "MXFP4":
        # E8M0: 2^(e - 127), e near log2(scale).
        blocks[:, 0] = np.clip(np.round(np.log2(scale)) + 127, 0, 254).astype(np.uint8)
    elif name == "NVFP4":
        blocks[:, 0:4] = gguf.quants.NVFP4.fp32_to_ue4m3(np.repeat(scale.reshape(-1, 1), 4, axis=1) * 2)
    return blocks


def dequantized(name: str, blocks: np.ndarray) -> np.ndarray:
    import gguf
    return gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[name]).reshape(-1).astype(np.float32)


def make_quant_blocks():
    """tests/fixtures/quants/blocks.safetensors: per type, random blocks and gguf-py's values for
    them; per i-quant grid, the grid as gguf-py decodes it."""
    from safetensors.numpy import save_file as np_save_file
    import gguf
    out = FIX / "quants"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + 77)
    tensors = {}
    n_blocks = 24
    for name in OWN_QUANTS:
        # Scales over several orders of magnitude, a negative one, and for MXFP4 the smallest
        # exponents (0 and 1 take ggml's denormal branch).
        scale = np.exp(rng.uniform(np.log(1e-3), np.log(4.0), size=n_blocks)).astype(np.float32)
        if name in F16_SCALE_AT or name == "IQ1_M":
            scale[3] = -scale[3]
        blocks = random_blocks(name, n_blocks, rng, scale)
        if name == "MXFP4":
            blocks[:3, 0] = [0, 1, 200]
        tensors[f"{name}.blocks"] = blocks.reshape(-1)
        tensors[f"{name}.values"] = dequantized(name, blocks)
        assert np.isfinite(tensors[f"{name}.values"]).all(), name
    values = rng.standard_normal(64) * 10.0 ** rng.integers(-8, 8, size=64)
    tensors["F64.blocks"] = values.astype("<f8").view(np.uint8)
    tensors["F64.values"] = values.astype(np.float32)
    for name in ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S"]:
        cls = getattr(gguf.quants, name)
        cls.init_grid()
        tensors[f"{name}.grid"] = cls.grid.reshape(-1).astype(np.int8)
    from importlib.metadata import version
    np_save_file(tensors, str(out / "blocks.safetensors"), metadata={
        "source": f"random blocks; values and grids by gguf-py {version('gguf')} quants.dequantize"})
    print(f"quants/blocks.safetensors: {sizeof(out / 'blocks.safetensors')}")


# Which type stores each linear weight of tiny/llama_iquants: every type of OWN_QUANTS once.
IQUANT_LAYOUT = [
    {"attn_q": "IQ2_XXS", "attn_k": "IQ2_XS", "attn_v": "IQ2_S", "attn_output": "IQ3_XXS",
     "ffn_gate": "IQ3_S", "ffn_up": "IQ1_S", "ffn_down": "IQ1_M"},
    {"attn_q": "IQ4_NL", "attn_k": "IQ4_XS", "attn_v": "TQ1_0", "attn_output": "TQ2_0",
     "ffn_gate": "MXFP4", "ffn_up": "NVFP4", "ffn_down": "IQ4_XS"},
]


def make_llama_iquants(sp_tok, sents):
    """tiny/llama_iquants: a llama GGUF (hidden 256, so rows are whole 256-value blocks) whose
    linear weights are random blocks of the types candle lacks, and transformers' reference for
    it, loaded from the GGUF (gguf-py dequantizes)."""
    import gguf
    folder = TINY / "llama_iquants"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    cfg = dict(hidden=256, ffn=512, layers=2, heads=4, kv_heads=2, ctx=512, eps=1e-5, theta=10000.0)
    head_dim = cfg["hidden"] // cfg["heads"]
    vocab = len(sp_tok)
    rng = np.random.default_rng(SEED + 78)
    path = folder / "model.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("neuronxa tiny llama_iquants")
    w.add_block_count(cfg["layers"])
    w.add_context_length(cfg["ctx"])
    w.add_embedding_length(cfg["hidden"])
    w.add_feed_forward_length(cfg["ffn"])
    w.add_head_count(cfg["heads"])
    w.add_head_count_kv(cfg["kv_heads"])
    w.add_rope_freq_base(cfg["theta"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(head_dim)
    add_sentencepiece_vocab(w, vocab)

    def norm(n):
        return rng.uniform(0.6, 1.4, size=n).astype(np.float32)

    def quantized(name, rows, cols, qtype, std):
        """Random blocks of `qtype` for a [rows, cols] weight whose values have about `std`."""
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
        n = rows * cols // block
        state = rng.bit_generator.state
        first = random_blocks(qtype, n, rng, np.ones(n, dtype=np.float32))
        unit = dequantized(qtype, first).std()
        rng.bit_generator.state = state  # the same bytes, scaled
        blocks = random_blocks(qtype, n, rng, np.full(n, std / unit, dtype=np.float32))
        w.add_tensor(name, blocks.reshape(rows, cols // block * type_size), raw_dtype=gguf.GGMLQuantizationType[qtype])

    h, f, kv = cfg["hidden"], cfg["ffn"], cfg["kv_heads"] * head_dim
    w.add_tensor("token_embd.weight", (rng.standard_normal((vocab, h)) * 0.5).astype(np.float16))
    shapes = {"attn_q": (h, h), "attn_k": (kv, h), "attn_v": (kv, h), "attn_output": (h, h),
              "ffn_gate": (f, h), "ffn_up": (f, h), "ffn_down": (h, f)}
    for i, layout in enumerate(IQUANT_LAYOUT):
        w.add_tensor(f"blk.{i}.attn_norm.weight", norm(h))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", norm(h))
        for tensor, qtype in layout.items():
            rows, cols = shapes[tensor]
            std = 0.04 if tensor in ("attn_output", "ffn_down") else 0.1
            quantized(f"blk.{i}.{tensor}.weight", rows, cols, qtype, std)
    w.add_tensor("output_norm.weight", norm(h))
    write_gguf(w)
    tok, gm = load_gguf(folder)
    _, f64 = load_gguf(folder, dtype=torch.float64)
    types = ", ".join(f"blk.{i}.{t}: {q}" for i, layout in enumerate(IQUANT_LAYOUT) for t, q in layout.items())
    tensors, meta = reference_for(gm, tok, sents, "llama_iquants", {
        "tokenizer": "from the GGUF (tokenizer.ggml.model=llama, add_bos_token=true), as transformers builds it",
        "weights_on_disk": "GGUF: random blocks; " + types}, f64_model=f64)
    save_file(tensors, str(folder / "reference.safetensors"), metadata=meta)
    print(f"tiny/llama_iquants: {sizeof(path)} gguf; ref {sizeof(folder / 'reference.safetensors')}")



# What a tiny checkpoint needs before llama.cpp's converter takes it, and why. The converter
# reads SentencePiece vocabularies from `tokenizer.model`, identifies a BPE pre-tokenizer by the
# hash of its output on a test string (ours are Qwen2's or Qwen3.5's split on a vocabulary of our
# own, so no hash is known: `PRE_TOKENIZERS`), and reads config keys that hub checkpoints carry and transformers 5 no longer
# writes (GPT-2's `n_ctx`, Cohere 2's and GPT-NeoX's `rotary_pct`, and Phi-4-mini's tokenizer
# class, by which it tells a byte-level BPE Phi).
CONVERTER_PATCH = r"""
import sys
from pathlib import Path
llama_cpp, model, out, pre = sys.argv[1:5]
extra = sys.argv[5:]
sys.path.insert(0, llama_cpp)
sys.path.insert(1, str(Path(llama_cpp) / "gguf-py"))
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
# The converter reads the config through transformers, whose GPTNeoXConfig (v5) folds
# `rotary_pct` into `rope_parameters`; give it back the key it looks for.
import json
_load_hparams = base.ModelBase.load_hparams
def load_hparams(dir_model, *args, **kwargs):
    config = _load_hparams(dir_model, *args, **kwargs)
    raw = json.loads((Path(dir_model) / "config.json").read_text())
    if "rotary_pct" in raw:
        config.setdefault("rotary_pct", raw["rotary_pct"])
    return config
base.ModelBase.load_hparams = staticmethod(load_hparams)
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py", model, "--outtype", "f32", "--outfile", out, *extra]
convert_hf_to_gguf.main()
"""

# Every tiny model of an architecture llama.cpp has (it has no XGLM) but three whose GGUF cannot
# say what the tiny model does:
# - Mistral: llama.cpp writes Mistral v0.x as `llama` without its sliding window (8 tokens in
#   the tiny model, 4096 in the real ones, where it never binds a sentence);
# - Gemma 3: GGUF has no query_pre_attn_scalar; llama.cpp takes hidden/heads for the 27B model
#   and head_dim otherwise, as every release has it. The tiny one uses 24 (head_dim 16) to
#   test the config.json path.
# - Falcon 7B's layout: the converter reads `num_kv_heads` through transformers, which fills it
#   with the number of query heads even where multi-query means one.
CONVERTED = ["llama", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2", "phi3", "phi4_mini", "stablelm", "smollm3",
             "granite", "cohere", "gpt2", "bloom", "gpt_neox", "falcon", "cohere2", "olmo3", "apertus",
             "llama_bias", "jais2", "nemotron", "olmoe", "qwen3_moe", "mixtral", "qwen2_moe", "exaone4", "arcee",
             "granitemoe", "lfm2", "qwen3_5", "qwen3_5_moe", "ministral3", "mistral3", "gpt_oss_mxfp4",
             "glm", "glm4", "gemma4", "gemma4_moe"]

# Converter flags some models need: Qwen3.5's converter expects multi-token-prediction layers,
# which the tiny checkpoint (like transformers' own) does not have.
CONVERTER_FLAGS = {"qwen3_5": ["--no-mtp"], "qwen3_5_moe": ["--no-mtp"]}
# The BPE pre-tokenizer each byte-level tiny model's GGUF is to name (the hash the converter
# goes by knows none of ours): Qwen2's split, but Qwen3.5's own, which keeps combining marks
# with their letters.
PRE_TOKENIZERS = {"qwen3_5": "qwen35", "qwen3_5_moe": "qwen35"}


def rename_added_token(tokenizer_json: Path, old: str, new: str) -> None:
    """Gives an added token (and its vocabulary entry) another name, keeping its id."""
    tok = json.loads(tokenizer_json.read_text())
    for added in tok["added_tokens"]:
        if added["content"] == old:
            added["content"] = new
    vocab = tok["model"]["vocab"]
    if old in vocab:
        vocab[new] = vocab.pop(old)
    tokenizer_json.write_text(json.dumps(tok, ensure_ascii=False))


def make_converted_ggufs(llama_cpp: Path, only=None):
    """tests/fixtures/gguf/<name>.gguf: tiny/<name> converted by llama.cpp's converter (F32), so
    that the GGUF reader is checked against transformers' reference for the original checkpoint."""
    import subprocess
    out_dir = FIX / "gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in CONVERTED:
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / name
            shutil.copytree(TINY / name, folder, ignore=shutil.ignore_patterns("reference.safetensors"))
            cfg = json.loads((folder / "config.json").read_text())
            tok = json.loads((folder / "tokenizer.json").read_text())
            if tok["model"].get("byte_fallback"):
                shutil.copy(FIX / "tokenizers" / "sp_llama.model", folder / "tokenizer.model")
            if cfg["model_type"] == "gpt2":
                cfg["n_ctx"] = cfg["n_positions"]
            if cfg["model_type"] == "cohere2":
                cfg["rotary_pct"] = 1.0
            if cfg["model_type"] == "gpt_neox":
                cfg["rotary_pct"] = cfg["rope_parameters"]["partial_rotary_factor"]
            if cfg["model_type"] in ("glm", "glm4"):
                # The converter looks up GLM's chat tokens by name; the tiny vocabulary's
                # `<|im_start|>` (never in a fixture sentence) plays `<|user|>`.
                rename_added_token(folder / "tokenizer.json", "<|im_start|>", "<|user|>")
            if cfg["model_type"] == "glm":
                # GlmForCausalLM goes through the ChatGLM converter, which reads ChatGLM's own
                # keys for the norms' epsilon (else 1e-5) and the context length (else the
                # width), as the original configs have them.
                cfg["layernorm_epsilon"] = cfg["rms_norm_eps"]
                cfg["seq_length"] = cfg["max_position_embeddings"]
            if cfg["model_type"] == "phi3" and not tok["model"].get("byte_fallback"):
                # Phi-4-mini's hub tokenizer_config names the class the converter looks for.
                tc_path = folder / "tokenizer_config.json"
                tc = json.loads(tc_path.read_text())
                tc["tokenizer_class"] = "GPT2Tokenizer"
                tc_path.write_text(json.dumps(tc, indent=2))
            (folder / "config.json").write_text(json.dumps(cfg, indent=2))
            out = out_dir / f"{name}.gguf"
            # The converter's own gguf-py, not the installed one.
            env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
            subprocess.run([sys.executable, "-c", CONVERTER_PATCH, str(llama_cpp), str(folder), str(out),
                            PRE_TOKENIZERS.get(name, "qwen2"), *CONVERTER_FLAGS.get(name, [])],
                           check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"gguf/{name}.gguf: {sizeof(out)}")


# Checkpoints in PyTorch's own format (`torch.save` zips, as transformers < 5 wrote them and as
# many older hub repositories still have only them): the same weights as tiny/<name>, one file
# for GPT-2, two shards with an index for XGLM.
PYTORCH_CHECKPOINTS = {"gpt2": 1, "xglm": 2}


def make_pytorch_checkpoints():
    from safetensors.torch import load_file
    for name, shards in PYTORCH_CHECKPOINTS.items():
        src, out = TINY / name, FIX / "pytorch" / name
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(src / f, out / f)
        state = load_file(str(src / "model.safetensors"))
        keys = sorted(state)
        if shards == 1:
            torch.save({k: state[k] for k in keys}, out / "pytorch_model.bin")
        else:
            weight_map = {}
            per = math.ceil(len(keys) / shards)
            for i in range(shards):
                file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
                part = keys[i * per:(i + 1) * per]
                torch.save({k: state[k] for k in part}, out / file)
                weight_map.update({k: file for k in part})
            total = sum(t.numel() * t.element_size() for t in state.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (out / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        print(f"pytorch/{name}: {shards} file(s), {len(keys)} tensors")


def make_gpt2_files_tokenizer(bl_nobos, sents):
    """tokenizers/gpt2_files/: the byte-level vocabulary as GPT-2-era repositories ship it
    (vocab.json, merges.txt and a tokenizer_config.json, no tokenizer.json; mGPT, for one), and
    the ids transformers' GPT2Tokenizer gives the fixture sentences from those files."""
    out = FIX / "tokenizers" / "gpt2_files"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    bl_nobos.backend_tokenizer.model.save(str(out))
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|begin_of_text|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "add_prefix_space": False,
              "model_max_length": 512}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tok = transformers.GPT2Tokenizer.from_pretrained(str(out))
    assert not (out / "tokenizer.json").exists()
    expected = [{"text": s["text"], "ids": tok(s["text"])["input_ids"]} for s in sents]
    (out / "expected_ids.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n")
    print(f"tokenizers/gpt2_files: {len(tok)} tokens, ids of {len(expected)} sentences")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["tiny", "demo", "gguf", "quants", "converted", "pytorch"], action="append",
                    help="restrict to a part (repeatable); tokenizers are always rebuilt")
    ap.add_argument("--models", nargs="*", help="restrict the tiny part to these model names")
    ap.add_argument("--demo-gguf", default=os.environ.get(
        "NEURONXA_DEMO_GGUF", str(Path.home() / ".cache/neuronxa/models/SmolLM2-135M-Instruct.Q4_1.gguf")))
    ap.add_argument("--llama-cpp", default=os.environ.get("NEURONXA_LLAMA_CPP"),
                    help="a llama.cpp folder holding convert_hf_to_gguf.py (for the converted part)")
    args = ap.parse_args()
    parts = set(args.only or ["tiny", "demo", "gguf", "quants", "converted", "pytorch"])

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    FIX.mkdir(parents=True, exist_ok=True)
    sents = fixture_sentences()
    (FIX / "sentences.json").write_text(json.dumps(sents, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    sp_tok, bl_bos, bl_nobos = make_tokenizers()
    if "tiny" in parts:
        make_tiny(sp_tok, bl_bos, bl_nobos, sents, only=args.models)
        if not args.models or {"gpt_oss", "gpt_oss_mxfp4"} & set(args.models):
            make_gpt_oss_mxfp4(sents)
    if "gguf" in parts:
        make_llama_gguf(sp_tok, sents)
    if "quants" in parts:
        make_quant_blocks()
        make_llama_iquants(sp_tok, sents)
    if "demo" in parts:
        g = Path(args.demo_gguf).expanduser()
        if g.is_file():
            make_demo(g)
        else:
            print(f"demo: {g} not found; demo fixtures left as they are", file=sys.stderr)
    if "pytorch" in parts:
        make_pytorch_checkpoints()
        make_gpt2_files_tokenizer(bl_nobos, sents)
    if "converted" in parts:
        if args.llama_cpp and (Path(args.llama_cpp) / "convert_hf_to_gguf.py").is_file():
            make_converted_ggufs(Path(args.llama_cpp), only=args.models)
        else:
            print("converted: no llama.cpp converter given (--llama-cpp); gguf/ left as it is", file=sys.stderr)


if __name__ == "__main__":
    main()
