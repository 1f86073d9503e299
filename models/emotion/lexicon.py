"""Valence from the words: VADER, the NRC emotion lexicon and curated complaint phrases.

Valence runs from -1 (hostile, complaining) to +1 (pleased). English uses VADER's compound
score, NRC anger/negative words and the phrase list; Mandarin (no VADER) a complaint / anger
lexicon with negation and degree words (``mandarin_valence``). Phrases are what contact-center callers say when they are upset, which general
sentiment lexicons miss ("speak to a manager", "third time I call", "找你们领导").
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from qa_rules.text import is_cjk, to_simplified

# Complaint and anger phrases. Weight: how strongly each one signals an upset caller.
ANGER_PHRASES_EN: dict[str, float] = {
    "ridiculous": 0.6,
    "unacceptable": 0.6,
    "outrageous": 0.6,
    "disgusting": 0.6,
    "pathetic": 0.6,
    "useless": 0.5,
    "incompetent": 0.6,
    "i am angry": 0.7,
    "i'm angry": 0.7,
    "really angry": 0.8,
    "so angry": 0.8,
    "furious": 0.8,
    "fed up": 0.6,
    "sick of": 0.6,
    "sick and tired": 0.7,
    "had enough": 0.6,
    "speak to a manager": 0.6,
    "speak to your manager": 0.6,
    "speak to a supervisor": 0.6,
    "talk to a manager": 0.6,
    "talk to your supervisor": 0.6,
    "file a complaint": 0.5,
    "make a complaint": 0.5,
    "waste of time": 0.6,
    "wasting my time": 0.6,
    "nobody called me back": 0.5,
    "no one called me back": 0.5,
    "been waiting for weeks": 0.4,
    "been waiting for hours": 0.4,
    "third time": 0.4,
    "every single time": 0.4,
    "lied to me": 0.6,
    "rip off": 0.6,
    "ripped off": 0.6,
    "scam": 0.6,
    "terrible service": 0.6,
    "worst service": 0.7,
    "not happy": 0.4,
    "are you kidding": 0.5,
    "you people": 0.4,
    "cancel everything": 0.4,
    "damn": 0.5,
    "hell": 0.3,
    "bloody": 0.4,
}

# Mandarin: what upset callers say on a contact-center line, by how strongly it signals
# anger or complaint (the same scale as the English phrases: 0.3 a mild complaint, 0.6 clear
# anger, 0.9 abuse). Matched on simplified characters, longest entry first, so 受不了 is one
# entry (its 不 is not a negation) and 不满意 wins over 满意. Words that are only upset in
# context stay out or come as the phrase that makes them so: 有病 is an insurance word (你有病
# is not), 垃圾 is 垃圾分类 too, 投诉 alone is mild and 我要投诉 is not.
ANGER_PHRASES_ZH: dict[str, float] = {
    # complaints and escalation
    "投诉": 0.35,
    "我要投诉": 0.7,
    "我要去投诉": 0.7,
    "我会投诉": 0.6,
    "要投诉你们": 0.8,
    "投诉你们": 0.7,
    "投诉你": 0.6,
    "举报": 0.5,
    "我要举报": 0.7,
    "曝光你们": 0.7,
    "找媒体": 0.6,
    "消协": 0.5,
    "找你们领导": 0.6,
    "找你们经理": 0.6,
    "叫你们领导": 0.6,
    "叫你们经理": 0.6,
    "让你们领导": 0.6,
    "找你们主管": 0.6,
    "叫你们负责人": 0.6,
    "你们领导": 0.4,
    "找领导": 0.5,
    "换个人": 0.5,
    # money back
    "退款": 0.15,
    "我要退款": 0.35,
    "给我退款": 0.4,
    "退钱": 0.4,
    "把钱退给我": 0.5,
    "赔偿": 0.35,
    "赔钱": 0.5,
    "乱扣费": 0.6,
    "乱收费": 0.6,
    "乱扣": 0.5,
    "多扣": 0.4,
    "扣我钱": 0.5,
    # bad service
    "不满意": 0.4,
    "太差了": 0.6,
    "太差": 0.6,
    "很差": 0.5,
    "真差": 0.5,
    "差劲": 0.6,
    "服务差": 0.5,
    "态度差": 0.5,
    "态度恶劣": 0.7,
    "恶劣": 0.6,
    "太烂": 0.6,
    "烂透了": 0.8,
    "什么破": 0.6,
    "破玩意": 0.7,
    "破东西": 0.6,
    "垃圾": 0.6,
    "坑人": 0.6,
    "坑钱": 0.6,
    "坑惨": 0.6,
    "被坑": 0.5,
    "别跟我说": 0.4,
    "没用的": 0.4,
    "听不懂人话": 0.7,
    "听不懂话": 0.6,
    "你听不懂吗": 0.5,
    "黑心": 0.6,
    "忽悠": 0.5,
    "糊弄": 0.5,
    "敷衍": 0.5,
    "推卸责任": 0.6,
    "踢皮球": 0.5,
    "推来推去": 0.5,
    "不靠谱": 0.5,
    "不专业": 0.5,
    "不负责任": 0.6,
    "不负责": 0.5,
    "不讲理": 0.6,
    "不讲道理": 0.6,
    "不像话": 0.6,
    "不合理": 0.4,
    "不公平": 0.5,
    "说话不算话": 0.6,
    "言而无信": 0.6,
    "出尔反尔": 0.6,
    "霸王条款": 0.6,
    "强买强卖": 0.6,
    "无能": 0.6,
    "有什么用": 0.5,
    "一点用都没有": 0.6,
    "屁用": 0.8,
    # deceit
    "骗子": 0.7,
    "骗人": 0.6,
    "骗我": 0.6,
    "诈骗": 0.6,
    "欺骗": 0.6,
    "莫名其妙": 0.5,
    "不明不白": 0.5,
    # anger itself
    "气死": 0.8,
    "气死我了": 0.9,
    "生气": 0.5,
    "愤怒": 0.7,
    "火大": 0.6,
    "恼火": 0.6,
    "烦死了": 0.7,
    "烦死": 0.7,
    "烦人": 0.5,
    "好烦": 0.5,
    "真烦": 0.5,
    "受不了": 0.6,
    "受够了": 0.7,
    "忍无可忍": 0.9,
    "忍不了": 0.6,
    "崩溃": 0.5,
    "抓狂": 0.6,
    "无语": 0.5,
    "失望": 0.5,
    "寒心": 0.6,
    "心寒": 0.6,
    "郁闷": 0.3,
    "着急": 0.25,
    "恶心": 0.6,
    "倒霉": 0.4,
    "倒了大霉": 0.5,
    "倒大霉": 0.5,
    # outrage and rhetorical questions
    "太过分了": 0.7,
    "过分": 0.6,
    "欺人太甚": 0.8,
    "不可理喻": 0.7,
    "岂有此理": 0.8,
    "离谱": 0.5,
    "荒唐": 0.6,
    "荒谬": 0.6,
    "凭什么": 0.5,
    "搞什么": 0.5,
    "搞什么鬼": 0.7,
    "什么玩意": 0.6,
    "有没有搞错": 0.6,
    "开什么玩笑": 0.5,
    "怎么搞的": 0.5,
    "你们怎么搞的": 0.6,
    "到底怎么回事": 0.5,
    "怎么回事": 0.2,
    "凭啥": 0.5,
    "怎么能这样": 0.5,
    "怎么可以这样": 0.5,
    "还好意思": 0.6,
    "什么态度": 0.6,
    "这态度": 0.4,
    "明摆着": 0.5,
    "欺负人": 0.6,
    "好欺负": 0.6,
    "欺负": 0.5,
    "耍我": 0.6,
    "耍人": 0.6,
    "乱来": 0.6,
    "乱搞": 0.6,
    "乱改": 0.5,
    "空话": 0.5,
    "废话": 0.5,
    "屁话": 0.8,
    "疯了": 0.5,
    "真是够了": 0.6,
    "真够了": 0.6,
    "烦不烦": 0.6,
    "我不管": 0.4,
    "必须给我": 0.4,
    "给我一个说法": 0.5,
    "讨个说法": 0.5,
    "没有诚意": 0.5,
    "有点诚意": 0.4,
    "没良心": 0.6,
    "不信任": 0.5,
    "没有信任": 0.5,
    "最高领导": 0.5,
    "上级领导": 0.5,
    "换别家": 0.4,
    "换一家": 0.3,
    "不用你们": 0.4,
    # waiting and being ignored
    "到底什么时候": 0.4,
    "到底谁": 0.4,
    "一拖再拖": 0.6,
    "拖了这么久": 0.5,
    "拖了多久": 0.5,
    "折腾": 0.4,
    "陪你们耗": 0.5,
    "挂我电话": 0.5,
    "没人回复": 0.5,
    "不回复": 0.4,
    "还要等多久": 0.4,
    "等了半天": 0.4,
    "等了好久": 0.4,
    "等了这么久": 0.5,
    "没人管": 0.5,
    "没人回": 0.4,
    "没人理": 0.5,
    "不理人": 0.5,
    "没人接": 0.4,
    "打不通": 0.35,
    "第三次": 0.4,
    "好几次了": 0.4,
    "打了好几次": 0.4,
    "说了多少遍": 0.6,
    "说了多少次": 0.6,
    "说了好几遍": 0.5,
    "又是这样": 0.5,
    "每次都这样": 0.5,
    "一直没解决": 0.5,
    "还没解决": 0.4,
    "耽误我时间": 0.6,
    "浪费我时间": 0.6,
    "浪费时间": 0.5,
    # abuse
    "你有病": 0.8,
    "是不是有病": 0.7,
    "有病啊": 0.7,
    "有病吧": 0.7,
    "神经病": 0.8,
    "脑子有病": 0.8,
    "混蛋": 0.9,
    "王八蛋": 0.9,
    "他妈的": 0.9,
    "妈的": 0.8,
    "去死": 0.9,
    "滚蛋": 0.9,
    "废物": 0.8,
    "白痴": 0.8,
    "笨蛋": 0.7,
    "愚蠢": 0.6,
    "该死": 0.6,
    "见鬼": 0.5,
}

POSITIVE_PHRASES_ZH: dict[str, float] = {
    "谢谢": 0.3,
    "感谢": 0.3,
    "多谢": 0.3,
    "太好了": 0.5,
    "好极了": 0.5,
    "太棒了": 0.5,
    "真棒": 0.4,
    "满意": 0.4,
    "非常好": 0.5,
    "很好": 0.3,
    "挺好": 0.3,
    "不错": 0.3,
    "辛苦了": 0.4,
    "辛苦你了": 0.4,
    "麻烦你了": 0.2,
    "麻烦您了": 0.2,
    "帮了大忙": 0.5,
    "放心了": 0.3,
    "开心": 0.4,
    "高兴": 0.3,
    "周到": 0.3,
    "贴心": 0.3,
}

# Consumed whole so the words inside them count for nothing: politeness with a negation in
# it, agents' reassurance and notices (别着急, 谨防诈骗), and words that only contain an entry.
NEUTRAL_PHRASES_ZH: tuple[str, ...] = (
    "不好意思",
    "没关系",
    "没事",
    "没问题",
    "不客气",
    "不用客气",
    "别客气",
    "不用谢",
    "垃圾分类",
    "垃圾桶",
    "防诈骗",
    "谨防诈骗",
    "反诈骗",
    "有病史",
    "满意度",
)

# A negation up to three characters before an entry: negated anger is not anger (我不生气,
# 不是骗子), negated praise is a complaint (不太满意). 不 inside an entry (受不了) is the entry's.
_NEGATORS_ZH = frozenset("不没别未勿莫甭")
_NEGATION_SPAN = 3
_NEGATED_PRAISE = -0.8  # 不太满意 = -0.8 x 满意
# Degree words just before an entry (up to three characters), strongest found counts.
_INTENSIFIERS_ZH: dict[str, float] = {
    "非常": 1.5,
    "特别": 1.5,
    "极其": 1.6,
    "简直": 1.5,
    "实在": 1.4,
    "十分": 1.4,
    "相当": 1.3,
    "真的": 1.3,
    "太": 1.5,
    "超": 1.4,
    "很": 1.3,
    "真": 1.3,
    "好": 1.2,
    "挺": 1.1,
    "有点": 0.7,
    "有些": 0.7,
    "稍微": 0.6,
}
_EXCLAMATION_BOOST = 1.2  # a complaint in a clause that ends in ！
_CLAUSE_RE = re.compile(r"[^，。！？；、,.!?;：:\s]+[！!]*")


def _zh_lexicon() -> dict[str, dict[str, float]]:
    """First character -> {entry: signed weight}; neutral entries weigh 0."""
    out: dict[str, dict[str, float]] = {}
    for table, sign in ((ANGER_PHRASES_ZH, -1.0), (POSITIVE_PHRASES_ZH, 1.0)):
        for phrase, w in table.items():
            out.setdefault(phrase[0], {})[phrase] = sign * w
    for phrase in NEUTRAL_PHRASES_ZH:
        out.setdefault(phrase[0], {})[phrase] = 0.0
    return out


_ZH_LEXICON = _zh_lexicon()
_ZH_LONGEST = max(len(p) for entries in _ZH_LEXICON.values() for p in entries)


@dataclass(frozen=True)
class Valence:
    valence: float  # -1 .. +1
    cues: tuple[str, ...] = field(default_factory=tuple)  # phrases and words that moved it


@cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@cache
def _nrc() -> dict[str, frozenset[str]]:
    """NRC word-emotion lexicon as shipped inside the NRCLex wheel (read directly: importing
    nrclex pulls TextBlob corpora that are not installed)."""
    try:
        ref = resources.files("nrclex") / "data" / "nrc_en.json"
        raw = json.loads(ref.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        return {}
    return {w: frozenset(tags) for w, tags in raw.items()}


_WORD_RE = re.compile(r"[a-z']+")


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, x))


def english_valence(text: str) -> Valence:
    low = " " + " ".join(_WORD_RE.findall(text.lower())) + " "
    cues: list[str] = []
    phrase_neg = 0.0
    for phrase, w in ANGER_PHRASES_EN.items():
        if f" {phrase} " in low:
            cues.append(phrase)
            phrase_neg += w
    nrc = _nrc()
    anger_words = [w for w in low.split() if "anger" in nrc.get(w, ())]
    cues.extend(w for w in anger_words if w not in cues)
    compound = float(_vader().polarity_scores(text)["compound"])
    # VADER alone calls "I am really angry" only mildly negative and is blind to
    # complaint phrases; the phrase and NRC anger evidence pushes further down.
    v = compound - min(phrase_neg, 1.0) - 0.15 * min(len(anger_words), 3)
    return Valence(_clip(v), tuple(cues))


def _degree(before: str) -> float:
    """The strongest degree word among the characters just before an entry (1.0: none)."""
    found = [m for w, m in _INTENSIFIERS_ZH.items() if w in before]
    return max(found, key=lambda m: abs(m - 1.0)) if found else 1.0


def _negates(clause: str, k: int) -> bool:
    """A negation character at ``k`` that negates: not the middle of an A-not-A question
    (能不能, 是不是, 有没有: "can you or not" asks, it does not deny)."""
    if clause[k] not in _NEGATORS_ZH:
        return False
    return not (0 < k < len(clause) - 1 and clause[k - 1] == clause[k + 1])


def mandarin_valence(text: str) -> Valence:
    """Valence of a Mandarin line from the complaint / praise lexicon.

    Simplified and traditional script alike (normalised to simplified). Each clause (split
    at punctuation) is scanned left to right for the longest lexicon entry; the up to three
    characters before an entry (and after the previous one) may negate it or scale it
    (太 / 非常 / 真 ... stronger, 有点 weaker); a complaint in a clause ending in ！ counts a
    fifth more. The entries' weights add up, clipped to [-1, 1], as for English.
    """
    norm = to_simplified(unicodedata.normalize("NFKC", text)).lower()
    cues: list[str] = []
    v = 0.0
    for clause in _CLAUSE_RE.findall(norm):
        exclaimed = clause.endswith(("!", "！"))
        i = last = 0
        n = len(clause)
        while i < n:
            entries = _ZH_LEXICON.get(clause[i])
            hit = None
            if entries:
                for size in range(min(_ZH_LONGEST, n - i), 0, -1):
                    w = entries.get(clause[i : i + size])
                    if w is not None:
                        hit = (clause[i : i + size], w)
                        break
            if hit is None:
                i += 1
                continue
            phrase, w = hit
            lo = max(last, i - _NEGATION_SPAN)
            before = clause[lo:i]
            negation = any(_negates(clause, k) for k in range(lo, i))
            i += len(phrase)
            last = i
            if w == 0.0:
                continue
            if negation:
                if w < 0:
                    continue  # 我不生气, 没有投诉的意思: not anger
                w *= _NEGATED_PRAISE  # 不太满意: a complaint
                cues.append("不" + phrase)
            else:
                w *= _degree(before)
                cues.append(phrase)
            if w < 0 and exclaimed:
                w *= _EXCLAMATION_BOOST
            v += w
    return Valence(_clip(v), tuple(dict.fromkeys(cues)))


def text_valence(text: str, language: str = "en") -> Valence:
    """Valence of one utterance's words in its language (``zh*`` = Mandarin).

    The script decides where the language and the words disagree: a line that is mostly
    Han characters is read as Mandarin, a ``zh`` line without any as English (a mixed call's
    English turn); English lines score exactly as before.
    """
    if not text.strip():
        return Valence(0.0)
    han = sum(1 for c in text if is_cjk(c))
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    if han > latin or (language.startswith("zh") and han):
        return mandarin_valence(text)
    return english_valence(text)
