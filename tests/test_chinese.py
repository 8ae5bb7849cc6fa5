"""Chinese read as English words by the lite towers (mmq/encoders/chinese.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmq.encoders import Encoder
from mmq.encoders.chinese import Glosser, shipped_glosser

# A few CC-CEDICT lines, as the file writes them: traditional, simplified, pinyin, senses.
CEDICT = """\
# CC-CEDICT
打 打 [da2] /dozen (loanword)/
打 打 [da3] /to beat/to strike/to play (a game)/
戴 戴 [Dai4] /surname Dai/
戴 戴 [dai4] /to put on or wear (glasses, hat, gloves etc)/to respect/
恆星系 恒星系 [heng2 xing1 xi4] /star system/stellar system/
星系 星系 [xing1 xi4] /see 恆星系|恒星系[heng2 xing1 xi4]/
貓 猫 [mao1] /cat/CL:隻|只[zhi1]/
翫 玩 [wan2] /variant of 玩[wan2]/
草地 草地 [cao3 di4] /lawn/meadow/
中的 中的 [zhong4 di4] /to hit the target/
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Glosser:
    path = tmp_path_factory.mktemp("cedict") / "cedict.txt"
    path.write_text(CEDICT, encoding="utf-8")
    return Glosser(path)


def test_a_words_sense_is_its_commonest_reading_without_names_or_references(
    small: Glosser,
) -> None:
    assert small.senses["打"] == "beat"  # [da3], not "dozen", the reading with fewer senses
    assert small.senses["戴"] == "put on or wear"  # not the surname; no parentheses, no "to"
    assert small.senses["星系"] == "star system"  # a cross-reference takes its target's sense
    assert small.senses["猫"] == small.senses["貓"] == "cat"  # simplified and traditional
    assert "玩" not in small.senses  # a variant only: no sense of its own


def test_text_without_chinese_comes_back_as_it_was(small: Glosser) -> None:
    for text in ["a cat on the lawn", "Café au lait, 2 cups!", "  spaced  ", ""]:
        assert small(text) == text


def test_runs_of_chinese_become_english_words(small: Glosser) -> None:
    assert small.words("草地上的猫") == ["草地", "上", "的", "猫"]  # longest words first
    # 上 is "on", moved before its noun; 的 and the measure word 只 are dropped.
    assert small("一只猫在草地上。") == "cat on lawn ."
    assert small("a cat 在草地上") == "a cat on lawn"
    assert small.words("太空中的星系") == ["太", "空", "中", "的", "星系"]  # not 中的
    assert small("猫？") == "cat ?"  # Chinese punctuation as ASCII


def test_a_cedict_line_that_is_not_an_entry_is_passed_over(tmp_path: Path) -> None:
    path = tmp_path / "cedict.txt"
    path.write_text("# comment\nnot an entry\n狗 狗 [gou3] /dog/\n", encoding="utf-8")
    assert Glosser(path).senses == {"狗": "dog"}


@pytest.mark.parametrize(
    ("chinese", "english"),
    [
        ("猫", "cat"),
        ("一个人在打篮球", "a person playing basketball"),
        ("骑自行车的人", "riding bicycle person"),
        ("桌子上的咖啡", "on table coffee"),
        ("视频里的猫在哪里？", "in video cat ?"),  # a question: its content words
        ("什么是太阳系？", "solar system ?"),
        ("太空中的星系", "in outer space stellar system"),
    ],
)
def test_the_shipped_dictionary(chinese: str, english: str) -> None:
    assert shipped_glosser()(chinese) == english


def test_lite_reads_a_chinese_query_in_the_english_space(encoder: Encoder) -> None:
    assert encoder.text_as_encoded("一只猫") == "cat"
    assert encoder.text_as_encoded("a cat") == "a cat"
    cat, chinese, dog = encoder.encode_texts(["cat", "一只猫", "狗"])
    assert float(chinese @ cat) == pytest.approx(1.0, abs=1e-5)
    assert float(dog @ cat) < 0.9
