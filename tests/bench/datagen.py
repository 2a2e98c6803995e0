"""Chat data that compresses like real chat: mixed Chinese and English sentences of varied lengths.

A seeded vocabulary (common English words plus syllable-built ones, Chinese words of one to
three common characters), drawn with Zipf-like frequencies into sentences and messages, gives
a zstd -1 ratio near real chat's 3.5:1 (a repeated sentence gives 100:1, which flatters every
dump and load). Python writes a pool of distinct messages once; the server then fills
chat_messages with INSERT ... SELECT from its sequence engine joined to the pool (two pool
messages joined for a third of the rows), the fastest of the ways tried: no client round trip
per row, and no file for LOAD DATA to write and read back.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import time
from collections.abc import Callable

from backend.config import Settings
from tests.bench.common import connect_app

SEED = 20261130
POOL_SIZE = 200_000  # distinct messages; rows beyond it combine two of them
CHUNK = 250_000  # rows per INSERT ... SELECT (one transaction each)

ENGLISH = """i you we they it he she me my your feel feeling felt think thought know want need just really
so very too not no yes ok okay maybe sometimes always never today tonight yesterday tomorrow week month
work job boss team school exam class friend friends family mom dad sister brother partner love hate sad
happy angry tired anxious worried scared lonely stressed calm better worse good bad hard easy help talk
listen understand sorry thanks thank please again still even about because but and or if when then than
that this what why how where who which can could would should will must might have has had do does did be
is am are was were been get got make made go going went come came take took see saw say said tell told
sleep eat cry laugh breathe walk run rest try tried give gave keep kept lose lost find found start stop
time day night morning life people person thing things something nothing everything anything nobody
everyone mind heart body head chest stomach panic attack therapy doctor medicine meeting deadline project
money rent home house room phone message call text weekend holiday trip plan plans future past moment
little much many more most less least enough lot bit kind sort way part place reason problem question
answer idea point fact truth feelings emotions thoughts worry stress pressure support advice step steps
small big new old long short next last first same different other another own right wrong sure true real
""".split()
ENGLISH_SYLLABLES = "ba be bi bo bu ca co de di do fa fe fi ga go ha he hi ka ke la le li lo lu ma me mi mo na ne ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi wa we ya yo za".split()
CHINESE = (
    "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后"
    "小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
    "知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最"
    "间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市"
    "眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计"
    "今受论被觉得睡累怕烦哭难过开心焦虑担心压力工作朋友父母孩子老板同事考试医生谢谢抱歉晚上早上周末聊天"
)
CHINESE_PUNCTUATION = ("，", "。", "？", "！", "……", "～")
ENGLISH_PUNCTUATION = (".", "?", "!", "...", ",")


def _zipf_weights(count: int) -> list[float]:
    return [1 / (rank + 1) ** 1.05 for rank in range(count)]


class Vocabulary:
    """About 3,000 English and 3,000 Chinese phrases of common words, each language with Zipf-like
    frequencies: chat repeats its phrases, not only its words."""

    def __init__(self, seed: int = SEED, phrases: int = 3000) -> None:
        self.random = random.Random(seed)
        made = {"".join(self.random.choices(ENGLISH_SYLLABLES, k=self.random.randint(2, 3))) for _ in range(800)}
        english_words = list(dict.fromkeys(ENGLISH + sorted(made)))
        chinese_words = list(dict.fromkeys(CHINESE))
        self.english = self._phrases(english_words, phrases, " ")
        self.chinese = self._phrases(chinese_words, phrases, "")
        self.english_weights = list(itertools.accumulate(_zipf_weights(len(self.english))))
        self.chinese_weights = list(itertools.accumulate(_zipf_weights(len(self.chinese))))

    def _phrases(self, words: list[str], count: int, joiner: str) -> list[str]:
        weights = list(itertools.accumulate(_zipf_weights(len(words))))
        made = [
            joiner.join(self.random.choices(words, cum_weights=weights, k=self.random.randint(1, 5)))
            for _ in range(count)
        ]
        return list(dict.fromkeys(made))

    def sentence(self) -> str:
        pick = self.random
        if pick.random() < 0.55:
            parts = pick.choices(self.chinese, cum_weights=self.chinese_weights, k=pick.randint(1, 5))
            return "".join(parts) + pick.choice(CHINESE_PUNCTUATION)
        parts = pick.choices(self.english, cum_weights=self.english_weights, k=pick.randint(1, 5))
        return " ".join(parts).capitalize() + pick.choice(ENGLISH_PUNCTUATION)

    def message(self) -> str:
        # Mostly one to five sentences; a few long outpourings.
        sentences = min(1 + int(self.random.expovariate(0.3)), 30)
        return " ".join(self.sentence() for _ in range(sentences))


def messages(count: int, seed: int = SEED) -> list[str]:
    vocabulary = Vocabulary(seed)
    return [vocabulary.message() for _ in range(count)]


def zstd_ratio(sample: bytes) -> float:
    """Raw size / zstd -1 size of a sample."""
    compressed = subprocess.run(["zstd", "-q", "-1", "-c"], input=sample, capture_output=True, check=True).stdout
    return len(sample) / len(compressed)


def _pool(cursor, size: int) -> None:
    """bench_pool(id, content): `size` distinct messages (dropped after the fill: no dump carries it)."""
    cursor.execute(
        "CREATE TABLE bench_pool (id INT PRIMARY KEY, content TEXT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
    pool = messages(size)
    for start in range(0, size, 2000):
        cursor.executemany(
            "INSERT INTO bench_pool (id, content) VALUES (%s, %s)",
            [(start + offset + 1, text) for offset, text in enumerate(pool[start : start + 2000])],
        )


def fill(settings: Settings, rows: int, say: Callable[[str], None] = print) -> None:
    """chat_messages grows to `rows` rows of generated chat (kept: a larger size extends it); 100 users,
    1,000 sessions (s0..s999)."""
    connection = connect_app(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM chat_messages")
            ((have, last),) = cursor.fetchall()
            if have >= rows:
                say(f"chat_messages already holds {have:,} rows")
                return
            cursor.execute(
                "INSERT IGNORE INTO users (id, username, password_hash) SELECT seq, CONCAT('user', seq), 'x' "
                "FROM seq_1_to_100"
            )
            cursor.execute(
                "INSERT IGNORE INTO chat_sessions (id, user_id, title) "
                "SELECT CONCAT('s', seq), seq % 100 + 1, CONCAT('session ', seq) FROM seq_0_to_999"
            )
            size = min(POOL_SIZE, max(rows, 1000))
            started = time.monotonic()
            _pool(cursor, size)
            say(f"  message pool: {size:,} distinct messages ({time.monotonic() - started:.0f} s)")
            started = time.monotonic()
            # A multiplicative hash of the row number picks pool messages in a scattered, repeatable order.
            for first in range(last + 1, last + 1 + rows - have, CHUNK):
                end = min(first + CHUNK, last + 1 + rows - have) - 1
                cursor.execute(
                    "INSERT INTO chat_messages (id, session_id, user_id, role, content, emotion, token_count, created_at) "
                    "SELECT s.seq, CONCAT('s', s.seq % 1000), s.seq % 100 + 1, ELT(1 + s.seq % 2, 'user', 'assistant'), "
                    "IF(s.seq % 3 = 0, CONCAT(a.content, ' ', b.content), a.content), "
                    "ELT(1 + (s.seq * 7) % 6, 'calm', 'sad', 'anxious', 'happy', 'angry', 'lonely'), "
                    "CHAR_LENGTH(a.content) DIV 3, "
                    "TIMESTAMP'2026-01-01 00:00:00' + INTERVAL s.seq * 7 SECOND "
                    f"FROM seq_{first}_to_{end} AS s "
                    f"JOIN bench_pool AS a ON a.id = 1 + (s.seq * 2654435761) % {size} "
                    f"JOIN bench_pool AS b ON b.id = 1 + (s.seq * 40503 + 17) % {size}"
                )
                say(f"  chat_messages: {end - last:,} / {rows - have:,} rows ({time.monotonic() - started:.0f} s)")
            cursor.execute("DROP TABLE bench_pool")
    finally:
        connection.close()


def content_ratio(settings: Settings, rows: int = 20_000) -> tuple[float, float]:
    """(zstd -1 ratio of a sample of chat_messages.content, its average bytes per message)."""
    connection = connect_app(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT content FROM chat_messages ORDER BY id LIMIT {rows}")
            sample = "\n".join(row[0] for row in cursor.fetchall()).encode()
    finally:
        connection.close()
    count = max(1, min(rows, sample.count(b"\n") + 1))
    return zstd_ratio(sample), len(sample) / count
