"""Agent-assist intent matching on the bundled MiniLM with real Banking77 and CLINC150 queries."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from assist.intents import (
    HYBRID_THRESHOLD,
    LEXICAL_THRESHOLD,
    IntentExample,
    IntentMatcher,
)
from models.embed import SentenceEmbedder, bundled_model_path, shared_embedder
from models.locator import ModelNotFoundError
from tests.conftest import shared

# Eight intents, some of them close (two about exchange rates, two about cards going missing).
INTENTS = (
    "card_arrival",
    "lost_or_stolen_card",
    "compromised_card",
    "exchange_rate",
    "card_payment_wrong_exchange_rate",
    "cancel_transfer",
    "pin_blocked",
    "top_up_failed",
)

ZH = {
    "cancel_contract": [
        "我想取消我的合约",
        "请帮我取消这个套餐",
        "我不想再用了，要解约",
        "怎么取消自动续费",
        "取消合同需要什么手续",
    ],
    "lost_card": [
        "我的银行卡丢了",
        "卡被偷了怎么办",
        "我找不到我的信用卡了",
        "请帮我挂失银行卡",
        "钱包丢了，里面有银行卡",
    ],
    "change_address": [
        "我搬家了，要改地址",
        "怎么修改我的邮寄地址",
        "我的联系地址变了",
        "帮我更新一下家庭住址",
        "新地址在北京",
    ],
}


def banking_split(
    per_intent: int = 10, held: int = 20
) -> tuple[list[IntentExample], list[tuple[str, str]]]:
    with shared("intents/banking77/train.csv").open(newline="") as fh:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(fh) if r["category"] in INTENTS]
    rng = np.random.default_rng(3)
    examples: list[IntentExample] = []
    queries: list[tuple[str, str]] = []
    for intent in INTENTS:
        texts = [t for t, c in rows if c == intent]
        order = rng.permutation(len(texts))
        examples += [IntentExample(intent, texts[i]) for i in order[:per_intent]]
        queries += [(texts[i], intent) for i in order[per_intent : per_intent + held]]
    return examples, queries


def clinc_oos() -> list[str]:
    data = json.loads(shared("intents/clinc150/data_full.json").read_text())
    return [text for text, _ in data["oos_val"]]


@pytest.fixture(scope="module")
def embedder() -> Iterator[SentenceEmbedder]:
    import torch

    threads = torch.get_num_threads()
    yield shared_embedder()
    torch.set_num_threads(threads)  # the embedder set 1 for the process; other tests keep theirs


@pytest.fixture(scope="module")
def banking(embedder: SentenceEmbedder) -> tuple[IntentMatcher, list[tuple[str, str]]]:
    examples, queries = banking_split()
    return IntentMatcher(examples, embedder), queries


def zh_examples() -> list[IntentExample]:
    return [IntentExample(intent, text) for intent, texts in ZH.items() for text in texts]


# -- embeddings ----------------------------------------------------------------------------
@pytest.mark.slow
def test_vectors_are_sentence_transformers_vectors(embedder: SentenceEmbedder) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["I am still waiting on my card?", "我的卡丢了", "", "a " * 400]
    ref = SentenceTransformer(str(bundled_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    batch = embedder.encode(texts)
    single = np.vstack([embedder.encode([t]) for t in texts])
    assert batch.dtype == np.float32 and batch.shape == (4, 384) == (4, embedder.dim)
    assert np.abs(batch - ref).max() < 1e-5
    assert np.abs(single - ref).max() < 1e-5
    assert embedder.encode([]).shape == (0, 384)
    assert embedder.model_id == "all-MiniLM-L6-v2"
    assert shared_embedder() is embedder


@pytest.mark.slow
def test_encode_from_many_threads_gives_the_same_vectors(embedder: SentenceEmbedder) -> None:
    texts = [f"I need help with order number {i}" for i in range(24)]
    serial = [embedder.encode([t])[0] for t in texts]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda t: embedder.encode([t])[0], texts))
    assert np.abs(np.array(serial) - np.array(parallel)).max() < 1e-6


def test_a_bad_model_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="nowhere"):
        SentenceEmbedder(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=r"missing tokenizer\.json, model\.safetensors"):
        SentenceEmbedder(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelNotFoundError, match=f"{tmp_path}.*model_type"):
        SentenceEmbedder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelNotFoundError, match=f"cannot load .* at {tmp_path}"):
        SentenceEmbedder(tmp_path, threads=None)


# -- matching, English ---------------------------------------------------------------------
@pytest.mark.slow
def test_held_out_banking_queries_find_their_intent(
    banking: tuple[IntentMatcher, list[tuple[str, str]]],
) -> None:
    matcher, queries = banking
    assert matcher.threshold == HYBRID_THRESHOLD
    assert sorted(matcher.intents) == sorted(INTENTS)
    top1 = top3 = suggested = 0
    for text, intent in queries:
        got = matcher.match(text, matcher.embed(text))
        assert len(got) == 3 and got[0].score >= got[1].score >= got[2].score
        top1 += got[0].intent == intent
        top3 += intent in [m.intent for m in got]
        suggested += matcher.best(text) is not None
    n = len(queries)
    assert top1 / n >= 0.85, top1 / n  # measured 0.95
    assert top3 / n >= 0.95, top3 / n  # measured 1.00
    assert suggested / n >= 0.9, suggested / n  # measured 0.994


@pytest.mark.slow
def test_off_topic_talk_suggests_nothing(
    banking: tuple[IntentMatcher, list[tuple[str, str]]],
) -> None:
    matcher, _ = banking
    for text in ("what's the weather like", "hi how are you", "okay thank you so much", "hello?"):
        assert matcher.best(text) is None, matcher.match(text)[0]
    oos = clinc_oos()
    silent = sum(matcher.best(t) is None for t in oos)
    assert silent / len(oos) >= 0.9, silent / len(oos)  # measured 0.97


@pytest.mark.slow
def test_reason_names_the_closest_example_and_the_shared_words(
    banking: tuple[IntentMatcher, list[tuple[str, str]]],
) -> None:
    matcher, _ = banking
    top = matcher.best("my card was stolen yesterday, please block it")
    assert top is not None and top.intent == "lost_or_stolen_card"
    assert top.example in [e.text for e in banking_split()[0] if e.intent == top.intent]
    assert "stolen" in top.terms and "card" in top.terms
    reason = top.reason()
    assert reason.startswith(f'like "{top.example}" (meaning {top.semantic:.2f}; words: ')
    assert "stolen" in reason
    assert 0 < top.lexical <= 1 and 0 < top.semantic <= 1 and 0 < top.score <= 1


@pytest.mark.slow
def test_a_precomputed_vector_gives_the_same_matches(
    banking: tuple[IntentMatcher, list[tuple[str, str]]],
) -> None:
    matcher, queries = banking
    text = queries[0][0]
    assert matcher.match(text, matcher.embed(text), top_k=5) == matcher.match(text, top_k=5)


@pytest.mark.slow
def test_blank_text_matches_nothing(banking: tuple[IntentMatcher, list[tuple[str, str]]]) -> None:
    matcher, _ = banking
    for text in ("", "   ", "...", "，。"):
        assert matcher.match(text) == []
        assert matcher.best(text) is None
        assert matcher.embed(text) is None


def test_lexical_only_fallback_still_matches() -> None:
    examples, queries = banking_split()
    matcher = IntentMatcher(examples)
    assert matcher.threshold == LEXICAL_THRESHOLD
    assert matcher.embed("my card is lost") is None
    top1 = sum(matcher.match(t)[0].intent == intent for t, intent in queries) / len(queries)
    assert top1 >= 0.75, top1  # measured 0.875
    top = matcher.best("someone stole my card")
    assert top is not None and top.intent == "lost_or_stolen_card" and top.semantic == 0.0
    assert top.reason() == f'like "{top.example}" (words: {", ".join(top.terms)})'
    assert "stole" in top.example.lower() or "stolen" in top.example.lower()
    oos = clinc_oos()
    silent = sum(matcher.best(t) is None for t in oos)
    assert silent / len(oos) >= 0.95, silent / len(oos)  # measured 1.00


# -- matching, Mandarin --------------------------------------------------------------------
@pytest.mark.slow
def test_chinese_queries_match_chinese_examples(embedder: SentenceEmbedder) -> None:
    for matcher in (IntentMatcher(zh_examples(), embedder), IntentMatcher(zh_examples())):
        cases = {
            "我要取消合約": "cancel_contract",  # traditional 約, the example has 约
            "我想解约": "cancel_contract",
            "我的卡丢了": "lost_card",
            "我的信用卡被偷了": "lost_card",
            "我搬家了，想修改地址": "change_address",
            "請幫我更新住址": "change_address",  # traditional
        }
        for text, intent in cases.items():
            top = matcher.best(text)
            assert top is not None and top.intent == intent, (text, matcher.match(text))
        for text in ("好的谢谢", "嗯", "今天天气怎么样", "你好，请问能听到吗", "请稍等一下"):
            assert matcher.best(text) is None, (text, matcher.match(text)[0])


@pytest.mark.slow
def test_chinese_weighs_words_more_than_meaning(embedder: SentenceEmbedder) -> None:
    matcher = IntentMatcher(zh_examples(), embedder)
    top = matcher.match("我要取消合約")[0]
    assert {"取消", "合约"} <= set(top.terms)  # bigrams, simplified
    # 0.9 lexical + 0.05 semantic + 0.05 capped head
    assert top.score == pytest.approx(0.9 * top.lexical + 0.05 * top.semantic, abs=0.05)


# -- construction --------------------------------------------------------------------------
@pytest.mark.slow
def test_example_vectors_are_cached_by_model_and_texts(
    embedder: SentenceEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = zh_examples()
    first = IntentMatcher(examples, embedder, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("intent-examples-*.npy"))) == 1
    calls: list[int] = []
    original = embedder.encode

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return original(texts)

    monkeypatch.setattr(embedder, "encode", counting)
    again = IntentMatcher(examples, embedder, cache_dir=tmp_path)
    assert calls == []  # the playbook's vectors came from the cache
    assert again.match("我想解约", first.embed("我想解约")) == first.match("我想解约")
    calls.clear()
    IntentMatcher([*examples, IntentExample("greeting", "你好")], embedder, cache_dir=tmp_path)
    assert calls == [len(examples) + 1]  # other texts, other key
    assert len(list(tmp_path.glob("intent-examples-*.npy"))) == 2


@pytest.mark.slow
def test_one_intent_and_threshold_overrides(embedder: SentenceEmbedder) -> None:
    matcher = IntentMatcher(
        [IntentExample("refund", "I want my money back"), IntentExample("refund", "refund please")],
        embedder,
        threshold=0.9,
    )
    assert matcher.threshold == 0.9
    top = matcher.match("can I get a refund")
    assert [m.intent for m in top] == ["refund"]
    assert matcher.best("can I get a refund") is None
    assert matcher.best("can I get a refund", threshold=0.3) == top[0]


def test_examples_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        IntentMatcher([])
    with pytest.raises(ValueError, match="needs an intent and a text"):
        IntentMatcher([IntentExample("refund", "  ")])
    matcher = IntentMatcher([IntentExample("a", "x y"), IntentExample("a", "x y ")])
    assert matcher.intents == ["a"]
